/**
 * What the status bar shows and when it warns, as pure functions of the status API's JSON
 * (GET /api/sidecars/status), so they are unit-tested without JupyterLab.
 */

export interface Usage {
  used_bytes: number;
  limit_bytes: number | null;
}

export interface Walltime {
  state: string;
  limit?: number;
  elapsed?: number;
  remaining?: number;
  deadline?: string;
  warnings?: number[];
  warnings_due?: number[];
}

export interface Status {
  memory: Usage & { peak_bytes?: number | null };
  cpu?: { usage_seconds: number; limit: number | null; percent: number | null };
  gpu: (Usage & { attribution?: string }) | null;
  walltime: Walltime | null;
}

export type Level = 'ok' | 'warning' | 'critical';

const MIB = 1024 * 1024;

/** Mebibytes, labelled MB as the seed's status line does; GB (one decimal) from 100 GB on. */
export function formatPair(used: number, limit: number | null): string {
  const big = (limit ?? used) >= 100 * 1024 * MIB;
  const unit = big ? 1024 * MIB : MIB;
  const show = (v: number): string =>
    big ? (v / unit).toFixed(1) : String(Math.round(v / unit));
  const label = big ? 'GB' : 'MB';
  return limit === null ? `${show(used)} ${label}` : `${show(used)} / ${show(limit)} ${label}`;
}

/** The unit follows the limit: seconds up to 5 minutes, minutes up to 5 hours, then hours. */
export function durationUnit(limit: number): ['s' | 'min' | 'h', number] {
  if (limit <= 300) {
    return ['s', 1];
  }
  if (limit <= 5 * 3600) {
    return ['min', 60];
  }
  return ['h', 3600];
}

export function formatWalltime(w: Walltime): string {
  if (w.limit === undefined || w.elapsed === undefined) {
    return w.state;
  }
  const [unit, size] = durationUnit(w.limit);
  const elapsed = Math.min(Math.floor(w.elapsed / size), Math.round(w.limit / size));
  return `${elapsed} / ${Math.round(w.limit / size)} ${unit}`;
}

/** "Mem: 450 / 51200 MB | GPU: 1164 / 10201 MB | Walltime: 28 / 30 min" */
export function statusText(s: Status): string {
  const parts = [`Mem: ${formatPair(s.memory.used_bytes, s.memory.limit_bytes)}`];
  if (s.gpu) {
    parts.push(`GPU: ${formatPair(s.gpu.used_bytes, s.gpu.limit_bytes)}`);
  }
  if (s.walltime) {
    parts.push(`Walltime: ${formatWalltime(s.walltime)}`);
  }
  return parts.join(' | ');
}

export function ratioLevel(usage: Usage | null): Level {
  if (!usage || !usage.limit_bytes) {
    return 'ok';
  }
  const ratio = usage.used_bytes / usage.limit_bytes;
  return ratio >= 0.9 ? 'critical' : ratio >= 0.75 ? 'warning' : 'ok';
}

export function walltimeLevel(w: Walltime | null): Level {
  if (!w || w.remaining === undefined) {
    return 'ok';
  }
  if (w.state === 'stopping' || w.state === 'stopped') {
    return 'critical';
  }
  const warnings = w.warnings ?? [];
  const due = w.warnings_due ?? warnings.filter(t => w.remaining! <= t);
  if (due.length === 0) {
    return 'ok';
  }
  return due.length === warnings.length ? 'critical' : 'warning';
}

const ORDER: Level[] = ['ok', 'warning', 'critical'];

export function levelOf(s: Status): Level {
  const levels = [ratioLevel(s.memory), ratioLevel(s.gpu), walltimeLevel(s.walltime)];
  return levels.reduce((a, b) => (ORDER.indexOf(b) > ORDER.indexOf(a) ? b : a), 'ok');
}

export function formatSeconds(seconds: number): string {
  if (seconds < 120) {
    return `${Math.round(seconds)} seconds`;
  }
  if (seconds < 7200) {
    return `${Math.round(seconds / 60)} minutes`;
  }
  return `${(seconds / 3600).toFixed(1)} hours`;
}

export interface Notice {
  key: string;
  kind: 'warning' | 'error' | 'info';
  message: string;
}

/** What has been announced already, so each notice appears once per session. */
export interface Announced {
  keys: string[];
  memoryHigh: boolean;
}

export const MEMORY_WARN = 0.9;
const MEMORY_REARM = 0.8;

/** The notices a new status calls for, and what is announced after them. */
export function notices(s: Status, before: Announced): [Notice[], Announced] {
  const found: Notice[] = [];
  const keys = new Set(before.keys);
  let memoryHigh = before.memoryHigh;
  const w = s.walltime;
  if (w && (w.state === 'stopping' || w.state === 'stopped')) {
    if (!keys.has('stop')) {
      found.push({
        key: 'stop',
        kind: 'error',
        message:
          'Your server is being stopped: its walltime is over. Your files are kept; ' +
          'start a new server from the hub to continue.'
      });
    }
    keys.add('stop');
  } else if (w && w.remaining !== undefined) {
    const due = w.warnings_due ?? (w.warnings ?? []).filter(t => w.remaining! <= t);
    const fresh = due.filter(t => !keys.has(`walltime-${t}`));
    if (fresh.length > 0) {
      // Only the nearest one: opening a tab 30 s before the end shows one notice, not three.
      found.push({
        key: `walltime-${Math.min(...fresh)}`,
        kind: 'warning',
        message:
          `Your server stops in ${formatSeconds(w.remaining)} (walltime ` +
          `${formatWalltime(w)}). Save your work; your files are kept.`
      });
      due.forEach(t => keys.add(`walltime-${t}`));
    }
  }
  const m = s.memory;
  if (m.limit_bytes) {
    const ratio = m.used_bytes / m.limit_bytes;
    if (ratio >= MEMORY_WARN && !memoryHigh) {
      memoryHigh = true;
      found.push({
        key: 'memory',
        kind: 'warning',
        message:
          `Memory at ${Math.round(ratio * 100)} % of the limit ` +
          `(${formatPair(m.used_bytes, m.limit_bytes)}): the kernel using the most may be ` +
          'killed if it grows further.'
      });
    } else if (ratio < MEMORY_REARM) {
      memoryHigh = false;
    }
  }
  return [found, { keys: [...keys], memoryHigh }];
}

export function tooltip(s: Status): string {
  const lines = [`Memory: ${formatPair(s.memory.used_bytes, s.memory.limit_bytes)}`];
  if (s.memory.peak_bytes) {
    lines.push(`  peak ${formatPair(s.memory.peak_bytes, null)}`);
  }
  if (s.cpu) {
    const limit = s.cpu.limit ? ` of ${s.cpu.limit} CPUs` : '';
    const percent = s.cpu.percent === null ? '-' : `${Math.round(s.cpu.percent)} %`;
    lines.push(`CPU: ${percent}${limit}`);
  }
  if (s.gpu) {
    lines.push(`GPU memory: ${formatPair(s.gpu.used_bytes, s.gpu.limit_bytes)}`);
  }
  const w = s.walltime;
  if (w && w.remaining !== undefined) {
    lines.push(`Walltime: ${formatSeconds(w.remaining)} left` +
      (w.deadline ? `, stops at ${w.deadline}` : ''));
  } else if (w) {
    lines.push(`Walltime: ${w.state}`);
  } else {
    lines.push('Walltime: no limit');
  }
  return lines.join('\n');
}
