import { describe, expect, it } from 'vitest';

import {
  Announced,
  Status,
  durationUnit,
  formatDisk,
  formatPair,
  formatWalltime,
  idleText,
  levelOf,
  notices,
  statusText,
  tooltip
} from '../src/format';
import units from './units.json';

const MIB = 1024 * 1024;
const fresh: Announced = { keys: [], memoryHigh: false };

function status(over: Partial<Status> = {}): Status {
  return {
    memory: { used_bytes: 450 * MIB, limit_bytes: 51200 * MIB },
    gpu: { used_bytes: 1164 * MIB, limit_bytes: 10201 * MIB },
    walltime: { state: 'running', limit: 1800, elapsed: 28 * 60 + 30, remaining: 90,
                warnings: [600, 60], warnings_due: [600] },
    ...over
  };
}

describe('formatting', () => {
  it('renders the seed status line', () => {
    expect(statusText(status())).toBe(
      'Mem: 450 / 51200 MB | GPU: 1164 / 10201 MB | Walltime: 28 / 30 min');
  });
  it('leaves out what is absent', () => {
    expect(statusText(status({ gpu: null, walltime: null }))).toBe('Mem: 450 / 51200 MB');
    expect(formatPair(97 * MIB, null)).toBe('97 MB');
  });
  it('follows the one unit convention (units.json, shared with the Python side)', () => {
    for (const pair of units.pairs) {
      expect(formatPair(pair.used, pair.limit)).toBe(pair.text);
    }
  });
  it('shows disk sizes in GB from 1 GB on (units.json disk_pairs)', () => {
    for (const pair of units.disk_pairs) {
      expect(formatDisk({ state: 'ready', used_bytes: pair.used, limit_bytes: pair.limit }))
        .toBe(pair.text);
    }
    expect(formatDisk({ state: 'ready', used_bytes: 3435973837, limit_bytes: 10737418240,
      complete: false })).toBe('≥ 3.2 / 10.0 GB');
    expect(formatDisk({ state: 'scanning', limit_bytes: null })).toBe('…');
  });
  it('adds the disk to the status line once it is known', () => {
    const disk = { state: 'ready' as const, used_bytes: 3435973837, limit_bytes: 10737418240,
      source: 'volume' as const, path: '/home/jovyan' };
    expect(statusText(status({ disk, walltime: null }))).toBe(
      'Mem: 450 / 51200 MB | GPU: 1164 / 10201 MB | Disk: 3.2 / 10.0 GB');
    expect(statusText(status({ disk: { state: 'scanning', limit_bytes: null }, walltime: null })))
      .toBe('Mem: 450 / 51200 MB | GPU: 1164 / 10201 MB');
    expect(tooltip(status({ disk }))).toContain('Disk: 3.2 / 10.0 GB in /home/jovyan (volume)');
  });
  it('switches to GB from 100 GB on', () => {
    expect(formatPair(20 * 1024 * MIB, 100 * 1024 * MIB)).toBe('20.0 / 100.0 GB');
    expect(formatPair(99 * 1024 * MIB, 99.9 * 1024 * MIB)).toBe('101376 / 102298 MB');
  });
  it('picks s, min or h from the limit', () => {
    expect(durationUnit(120)).toEqual(['s', 1]);
    expect(durationUnit(300)).toEqual(['s', 1]);
    expect(durationUnit(1800)).toEqual(['min', 60]);
    expect(durationUnit(12 * 3600)).toEqual(['h', 3600]);
    expect(formatWalltime({ state: 'running', limit: 120, elapsed: 45.7 })).toBe('45 / 120 s');
    expect(formatWalltime({ state: 'running', limit: 43200, elapsed: 3 * 3600 + 5 }))
      .toBe('3 / 12 h');
    expect(formatWalltime({ state: 'running', limit: 120, elapsed: 130 })).toBe('120 / 120 s');
    expect(formatWalltime({ state: 'unavailable' })).toBe('unavailable');
  });
  it('matches what the end-to-end test looks for', () => {
    expect(statusText(status())).toMatch(/Walltime: \d+ \/ \d+ (s|min)/);
  });
  it('explains in the tooltip', () => {
    expect(tooltip(status())).toContain('Walltime: 90 seconds left');
    expect(tooltip(status({ walltime: null }))).toContain('Walltime: no limit');
  });
});

describe('levels', () => {
  it('is ok far from every limit', () => {
    expect(levelOf(status({ walltime: { state: 'running', limit: 1800, elapsed: 60,
                                        remaining: 1740, warnings: [600, 60],
                                        warnings_due: [] } }))).toBe('ok');
  });
  it('warns at 75 % memory and is critical from 90 %', () => {
    const at = (ratio: number): string => levelOf(status({
      walltime: null, gpu: null,
      memory: { used_bytes: ratio * 1000 * MIB, limit_bytes: 1000 * MIB } }));
    expect(at(0.74)).toBe('ok');
    expect(at(0.75)).toBe('warning');
    expect(at(0.9)).toBe('critical');
  });
  it('follows the walltime thresholds', () => {
    expect(levelOf(status())).toBe('warning'); // 10-minute warning due, 1-minute not
    expect(levelOf(status({ walltime: { state: 'warning', limit: 1800, elapsed: 1750,
                                        remaining: 50, warnings: [600, 60],
                                        warnings_due: [600, 60] } }))).toBe('critical');
  });
});

describe('access tokens', () => {
  const failing = status({
    walltime: null,
    tokens: { state: 'failing', problem: 'refresh failed: ConnectError: timed out',
      hint: 'allow the provider in singleuser.networkPolicy.egress', since: 1000 }
  });
  it('warns once per outage, with the hint for the administrator', () => {
    const [first, after] = notices(failing, fresh);
    expect(first.map(n => n.key)).toEqual(['tokens-1000']);
    expect(first[0].message).toContain('cannot be renewed: refresh failed: ConnectError');
    expect(first[0].message).toContain('For your administrator: allow the provider');
    expect(notices(failing, after)[0]).toEqual([]);
    const next = { ...failing, tokens: { ...failing.tokens!, since: 5000 } };
    expect(notices(next, after)[0].map(n => n.key)).toEqual(['tokens-5000']);
  });
  it('says nothing while tokens are fine, and shows the state in the tooltip', () => {
    const fine = status({ walltime: null, tokens: { state: 'ok' } });
    expect(notices(fine, fresh)[0]).toEqual([]);
    expect(tooltip(fine)).toContain('Access tokens: ok');
    expect(tooltip(failing)).toContain('Access tokens: failing (refresh failed');
  });
});

describe('disk', () => {
  const at = (ratio: number): Status => status({
    walltime: null,
    disk: { state: 'ready', used_bytes: Math.round(ratio * 10 * 1024 * MIB),
      limit_bytes: 10 * 1024 * MIB, source: 'scan', path: '/home/jovyan' }
  });
  it('turns orange and red near the limit, like memory', () => {
    expect(levelOf(at(0.5))).toBe('ok');
    expect(levelOf(at(0.8))).toBe('warning');
    expect(levelOf(at(0.95))).toBe('critical');
  });
  it('warns once at 90 %, again only after dropping below 80 %', () => {
    const [first, after] = notices(at(0.92), fresh);
    expect(first.map(n => n.key)).toEqual(['disk']);
    expect(first[0].message).toContain('Disk at 92 % of the limit (9.2 / 10.0 GB in /home/jovyan)');
    expect(notices(at(0.95), after)[0]).toEqual([]);
    const [, rearmed] = notices(at(0.5), after);
    expect(notices(at(0.93), rearmed)[0].map(n => n.key)).toEqual(['disk']);
  });
  it('says nothing without a limit', () => {
    const unlimited = status({ walltime: null,
      disk: { state: 'ready', used_bytes: 5e12, limit_bytes: null, path: '/home/jovyan' } });
    expect(notices(unlimited, fresh)[0]).toEqual([]);
    expect(levelOf({ ...unlimited, memory: { used_bytes: 1, limit_bytes: 100 }, gpu: null }))
      .toBe('ok');
  });
});

describe('notices', () => {
  it('announces each walltime threshold once, the nearest first', () => {
    const [first, after] = notices(status(), fresh);
    expect(first.map(n => n.key)).toEqual(['walltime-600']);
    expect(first[0].message).toContain('stops in 90 seconds');
    expect(first[0].message).toContain('files are kept');
    expect(notices(status(), after)[0]).toEqual([]);
    const late = status({ walltime: { state: 'warning', limit: 1800, elapsed: 1770,
                                      remaining: 30, warnings: [600, 60],
                                      warnings_due: [600, 60] } });
    expect(notices(late, after)[0].map(n => n.key)).toEqual(['walltime-60']);
    // a tab opened 30 s before the end shows one notice, not two
    expect(notices(late, fresh)[0].map(n => n.key)).toEqual(['walltime-60']);
  });
  it('tells the user when the server is being stopped, once', () => {
    const stopping = status({ walltime: { state: 'stopping', limit: 1800, elapsed: 1800,
                                          remaining: 0, warnings: [600, 60],
                                          warnings_due: [600, 60] } });
    const [found, after] = notices(stopping, fresh);
    expect(found).toHaveLength(1);
    expect(found[0].kind).toBe('error');
    expect(found[0].message).toMatch(/being stopped.*files are kept/);
    expect(notices(stopping, after)[0]).toEqual([]);
  });
  it('warns at 90 % memory once, again only after dropping below 80 %', () => {
    const memory = (ratio: number): Status => status({
      walltime: null, memory: { used_bytes: ratio * 1000 * MIB, limit_bytes: 1000 * MIB } });
    let [found, state] = notices(memory(0.89), fresh);
    expect(found).toEqual([]);
    [found, state] = notices(memory(0.91), state);
    expect(found.map(n => n.key)).toEqual(['memory']);
    [found, state] = notices(memory(0.95), state);
    expect(found).toEqual([]);
    [found, state] = notices(memory(0.85), state);
    [found, state] = notices(memory(0.92), state);
    expect(found).toEqual([]); // never went below 80 %
    [found, state] = notices(memory(0.5), state);
    [found] = notices(memory(0.93), state);
    expect(found.map(n => n.key)).toEqual(['memory']);
  });
  it('has nothing to say without limits', () => {
    expect(notices(status({ walltime: null,
                            memory: { used_bytes: 5, limit_bytes: null } }), fresh)[0])
      .toEqual([]);
  });
});

describe('idle stop', () => {
  const idle = (remaining: number, due: number[], deadline = '2026-11-30T14:00:00Z') =>
    status({ walltime: { state: due.length ? 'warning' : 'running',
                         idle: { limit: 7200, idle_for: 7200 - remaining, remaining,
                                 deadline, warnings: [600, 60], warnings_due: due } } });
  it('says nothing until a warning is due, then counts down', () => {
    expect(statusText(idle(3600, []))).toBe('Mem: 450 / 51200 MB | GPU: 1164 / 10201 MB');
    expect(statusText(idle(540, [600]))).toBe(
      'Mem: 450 / 51200 MB | GPU: 1164 / 10201 MB | Idle: stops in 9 min');
    expect(idleText(idle(45, [600, 60]).walltime)).toBe('Idle: stops in 45 s');
    expect(levelOf(idle(540, [600]))).toBe('warning');
    expect(levelOf(idle(45, [600, 60]))).toBe('critical');
  });
  it('shows walltime and idle side by side', () => {
    const both = status();
    both.walltime!.idle = { limit: 3600, idle_for: 3100, remaining: 500,
                            warnings: [600], warnings_due: [600] };
    expect(statusText(both)).toMatch(/Walltime: 28 \/ 30 min \| Idle: stops in 9 min$/);
  });
  it('warns once per idle spell, says how to keep the server, and why it stopped', () => {
    const [found, after] = notices(idle(540, [600]), fresh);
    expect(found.map(n => n.kind)).toEqual(['warning']);
    expect(found[0].message).toMatch(/stops in 9 minutes.*keeps it running/);
    expect(notices(idle(500, [600]), after)[0]).toEqual([]);
    // activity moved the deadline: the next idle spell warns again
    expect(notices(idle(540, [600], '2026-11-30T15:00:00Z'), after)[0]).toHaveLength(1);
    const stopped = status({ walltime: { state: 'stopping', stop_reason: 'idle',
                                         idle: { limit: 7200, idle_for: 7200,
                                                 remaining: 0 } } });
    expect(notices(stopped, fresh)[0][0].message).toContain('idle for too long');
    expect(tooltip(idle(540, [600]))).toContain('Idle stop: after 2.0 hours without activity');
  });
});
