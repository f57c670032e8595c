/**
 * What the status bar shows and when it warns, as pure functions of the status API's JSON
 * (GET /api/sidecars/status), so they are unit-tested without JupyterLab.
 */

export interface Usage {
  used_bytes: number;
  limit_bytes: number | null;
}

/** The idle stop: the server stops after `limit` seconds without activity. */
export interface Idle {
  limit: number;
  idle_for: number;
  remaining: number;
  deadline?: string;
  warnings?: number[];
  warnings_due?: number[];
}

export interface Walltime {
  state: string;
  limit?: number;
  elapsed?: number;
  remaining?: number;
  deadline?: string;
  warnings?: number[];
  warnings_due?: number[];
  idle?: Idle;
  stop_reason?: 'walltime' | 'idle';
}

/** The home folder against its limit (services/metrics/disk.py); `state` scanning at first. */
export interface Disk {
  state: 'ready' | 'scanning' | 'unavailable';
  used_bytes?: number;
  limit_bytes: number | null;
  source?: 'cephfs' | 'project-quota' | 'volume' | 'scan';
  path?: string;
  complete?: boolean;
}

/** The tokenhelper's verdict: `failing` while it cannot renew the access tokens. */
export interface Tokens {
  state: 'ok' | 'starting' | 'failing' | 'unavailable';
  problem?: string | null;
  hint?: string | null;
  since?: number | null;
}

export interface Status {
  memory: Usage & { peak_bytes?: number | null };
  tokens?: Tokens | null;
  disk?: Disk | null;
  cpu?: { usage_seconds: number; limit: number | null; percent: number | null };
  gpu: (Usage & { attribution?: string }) | null;
  walltime: Walltime | null;
}

export type Level = 'ok' | 'warning' | 'critical';
const ORDER: Level[] = ['ok', 'warning', 'critical'];

const MIB = 1024 * 1024;

/** Mebibytes, labelled MB as the seed's status line does; GB (one decimal) from 100 GB on
 * (from 1 GB for disk sizes: `gbFrom`). */
export function formatPair(used: number, limit: number | null,
  gbFrom: number = 100 * 1024 * MIB): string {
  const big = (limit ?? used) >= gbFrom;
  const unit = big ? 1024 * MIB : MIB;
  const show = (v: number): string =>
    big ? (v / unit).toFixed(1) : String(Math.round(v / unit));
  const label = big ? 'GB' : 'MB';
  return limit === null ? `${show(used)} ${label}` : `${show(used)} / ${show(limit)} ${label}`;
}

/** "3.2 / 10.0 GB"; "≥ 3.2 / 10.0 GB" when a scan ran out of time before the end. */
export function formatDisk(d: Disk): string {
  if (d.state !== 'ready' || d.used_bytes === undefined) {
    return '…';
  }
  const text = formatPair(d.used_bytes, d.limit_bytes, 1024 * MIB);
  return d.complete === false ? `≥ ${text}` : text;
}

function diskUsage(d: Disk | null | undefined): Usage | null {
  return d && d.state === 'ready' && d.used_bytes !== undefined ?
    { used_bytes: d.used_bytes, limit_bytes: d.limit_bytes } : null;
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
  if (s.disk && s.disk.state === 'ready') {
    parts.push(`Disk: ${formatDisk(s.disk)}`);
  }
  const w = s.walltime;
  if (w && (w.limit !== undefined || !w.idle)) {
    parts.push(`Walltime: ${formatWalltime(w)}`);
  }
  const idle = idleText(w);
  if (idle) {
    parts.push(idle);
  }
  return parts.join(' | ');
}

/** "Idle: stops in 9 min" once an idle warning is due; nothing before. */
export function idleText(w: Walltime | null): string {
  const idle = w?.idle;
  if (!idle || idleDue(idle).length === 0) {
    return '';
  }
  return `Idle: stops in ${shortSeconds(idle.remaining)}`;
}

function idleDue(idle: Idle): number[] {
  return idle.warnings_due ?? (idle.warnings ?? []).filter(t => idle.remaining <= t);
}

/** "9 min", "45 s": the countdown in the status bar, rounded up so it never shows 0 early. */
export function shortSeconds(seconds: number): string {
  if (seconds < 120) {
    return `${Math.max(0, Math.ceil(seconds))} s`;
  }
  return `${Math.ceil(seconds / 60)} min`;
}

export function ratioLevel(usage: Usage | null): Level {
  if (!usage || !usage.limit_bytes) {
    return 'ok';
  }
  const ratio = usage.used_bytes / usage.limit_bytes;
  return ratio >= 0.9 ? 'critical' : ratio >= 0.75 ? 'warning' : 'ok';
}

export function walltimeLevel(w: Walltime | null): Level {
  if (w && (w.state === 'stopping' || w.state === 'stopped')) {
    return 'critical';
  }
  const idle = w?.idle;
  const idleLevel: Level = !idle || idleDue(idle).length === 0 ? 'ok' :
    idleDue(idle).length === (idle.warnings ?? []).length ? 'critical' : 'warning';
  if (!w || w.remaining === undefined) {
    return idleLevel;
  }
  const warnings = w.warnings ?? [];
  const due = w.warnings_due ?? warnings.filter(t => w.remaining! <= t);
  const own: Level = due.length === 0 ? 'ok' :
    due.length === warnings.length ? 'critical' : 'warning';
  return ORDER.indexOf(idleLevel) > ORDER.indexOf(own) ? idleLevel : own;
}

export function levelOf(s: Status): Level {
  const levels = [ratioLevel(s.memory), ratioLevel(s.gpu), ratioLevel(diskUsage(s.disk)),
    walltimeLevel(s.walltime)];
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
  diskHigh?: boolean;
}

export const MEMORY_WARN = 0.9;
const MEMORY_REARM = 0.8;
export const DISK_WARN = 0.9;
const DISK_REARM = 0.8;

/** The notices a new status calls for, and what is announced after them. */
export function notices(s: Status, before: Announced): [Notice[], Announced] {
  const found: Notice[] = [];
  const keys = new Set(before.keys);
  let memoryHigh = before.memoryHigh;
  let diskHigh = before.diskHigh ?? false;
  const w = s.walltime;
  if (w && (w.state === 'stopping' || w.state === 'stopped')) {
    if (!keys.has('stop')) {
      const why = w.stop_reason === 'idle' ? 'it was idle for too long' :
        'its walltime is over';
      found.push({
        key: 'stop',
        kind: 'error',
        message:
          `Your server is being stopped: ${why}. Your files are kept; ` +
          'start a new server from the hub to continue.'
      });
    }
    keys.add('stop');
    return [found, { keys: [...keys], memoryHigh, diskHigh }];
  }
  const idle = w?.idle;
  if (idle) {
    const due = idleDue(idle);
    // Keyed by the deadline: activity moves it, and the next idle spell warns again.
    const epoch = idle.deadline ?? '';
    const fresh = due.filter(t => !keys.has(`idle-${t}-${epoch}`));
    if (fresh.length > 0) {
      found.push({
        key: `idle-${Math.min(...fresh)}-${epoch}`,
        kind: 'warning',
        message:
          `Your server has been idle and stops in ${formatSeconds(idle.remaining)} ` +
          `(after ${formatSeconds(idle.limit)} without activity). Anything you do in ` +
          'JupyterLab — run a cell, type in a terminal, open a file — keeps it running.'
      });
      due.forEach(t => keys.add(`idle-${t}-${epoch}`));
    }
  }
  if (w && w.remaining !== undefined) {
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
  const t = s.tokens;
  if (t && (t.state === 'failing' || t.state === 'unavailable')) {
    const key = `tokens-${t.since ?? t.state}`;
    if (!keys.has(key)) {
      found.push({
        key,
        kind: 'warning',
        message:
          'Access tokens (for ARC, gfal2, davix and oidc-agent tools) cannot be renewed: ' +
          `${t.problem ?? t.state}. The current one keeps working until it expires.` +
          (t.hint ? ` For your administrator: ${t.hint}.` : '')
      });
      keys.add(key);
    }
  }
  const d = diskUsage(s.disk);
  if (d && d.limit_bytes) {
    const ratio = d.used_bytes / d.limit_bytes;
    if (ratio >= DISK_WARN && !diskHigh) {
      diskHigh = true;
      found.push({
        key: 'disk',
        kind: 'warning',
        message:
          `Disk at ${Math.round(ratio * 100)} % of the limit (${formatDisk(s.disk!)} in ` +
          `${s.disk!.path}): delete or move files you no longer need before writes fail.`
      });
    } else if (ratio < DISK_REARM) {
      diskHigh = false;
    }
  }
  return [found, { keys: [...keys], memoryHigh, diskHigh }];
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
  if (s.disk && s.disk.state === 'ready') {
    const how = s.disk.source === 'scan' ? 'counted' : s.disk.source;
    lines.push(`Disk: ${formatDisk(s.disk)} in ${s.disk.path} (${how})`);
  } else if (s.disk) {
    lines.push(`Disk: ${s.disk.state}`);
  }
  if (s.tokens) {
    lines.push(`Access tokens: ${s.tokens.state}` +
      (s.tokens.problem ? ` (${s.tokens.problem})` : ''));
  }
  const w = s.walltime;
  if (w && w.remaining !== undefined) {
    lines.push(`Walltime: ${formatSeconds(w.remaining)} left` +
      (w.deadline ? `, stops at ${w.deadline}` : ''));
  } else if (w && !w.idle) {
    lines.push(`Walltime: ${w.state}`);
  } else {
    lines.push('Walltime: no limit');
  }
  if (w?.idle) {
    lines.push(`Idle stop: after ${formatSeconds(w.idle.limit)} without activity ` +
      `(idle for ${formatSeconds(w.idle.idle_for)})`);
  }
  return lines.join('\n');
}
