// Maintenance windows and change freezes on the gateway's clock, in each window's own time zone.
// Owns wall-clock arithmetic (ICU through Intl for UTC offsets, plain integer math for the rest);
// must never call Intl per command: offsets are cached per time zone for the 15-minute UTC slot
// they were computed in (every time-zone transition in use today falls on a quarter hour), so a
// decision costs a Map lookup and a few integer operations.
//
// Semantics, because DST makes "22:00 to 06:00" ambiguous: a recurring window is wall-clock time.
// On the spring-forward night the skipped local hour simply never happens (a 01:00-04:00 window
// lasts two real hours); on the fall-back night the repeated hour is inside the window both times
// (a 02:00-03:00 window lasts two real hours). Absolute windows (start/end) are converted to
// instants once, when the bundle is loaded.

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

const DAY_MS = 86_400_000;
const SLOT_MS = 900_000;
/** 1970-01-01 was a Thursday. */
const EPOCH_WEEKDAY = 4;

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** An IANA time zone name the runtime's ICU knows (Europe/Berlin, America/New_York, UTC). */
export function isValidTimeZone(timeZone: string): boolean {
  if (timeZone === '') return false;
  try {
    formatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** local wall-clock time minus UTC, in ms, of `timeZone` at instant `ms` (Intl; slow: cache it). */
export function utcOffsetMs(timeZone: string, ms: number): number {
  const whole = Math.floor(ms / 1000) * 1000;
  let y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  for (const p of formatter(timeZone).formatToParts(new Date(whole))) {
    const v = Number(p.value);
    switch (p.type) {
      case 'year': y = v; break;
      case 'month': mo = v; break;
      case 'day': d = v; break;
      case 'hour': h = v === 24 ? 0 : v; break;
      case 'minute': mi = v; break;
      case 'second': s = v; break;
      default: break;
    }
  }
  return Date.UTC(y, mo - 1, d, h, mi, s) - whole;
}

/**
 * The instant of a local wall-clock time. A time inside the spring-forward gap is moved forward by
 * the gap's length (02:30 → 03:30, like Temporal's 'compatible'); a time in the repeated fall-back
 * hour is the later of its two instants.
 */
export function localToUtcMs(timeZone: string, localMs: number): number {
  const first = localMs - utcOffsetMs(timeZone, localMs);
  const second = localMs - utcOffsetMs(timeZone, first);
  return utcOffsetMs(timeZone, second) === localMs - second ? second : Math.max(first, second);
}

/** Per-zone offset cache: one Intl call per zone per quarter hour of gateway time. */
export class ZoneClock {
  private slot = Number.NaN;
  private offset = 0;
  constructor(readonly timeZone: string) {}

  localMs(ms: number): number {
    const slot = Math.floor(ms / SLOT_MS);
    if (slot !== this.slot) {
      this.offset = utcOffsetMs(this.timeZone, ms);
      this.slot = slot;
    }
    return ms + this.offset;
  }
}

/** A window as the bundle carries it (see payload.ts). */
export interface WindowSpec {
  id: string;
  time_zone: string;
  days?: Weekday[];
  /** 'HH:MM' local, inclusive. */
  from?: string;
  /** 'HH:MM' local, exclusive; earlier than `from` = the window runs past midnight. '24:00' allowed. */
  to?: string;
  /** 'YYYY-MM-DDTHH:MM' local, inclusive. */
  start?: string;
  /** 'YYYY-MM-DDTHH:MM' local, exclusive. */
  end?: string;
}

const HHMM = /^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$/;
const LOCAL_DATETIME = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})$/;

/** Minutes since local midnight, or null. */
export function parseHhmm(text: string): number | null {
  if (!HHMM.test(text)) return null;
  if (text === '24:00') return 1440;
  return Number(text.slice(0, 2)) * 60 + Number(text.slice(3, 5));
}

/** A local date-time as ms of a UTC-based wall clock (not yet an instant), or null. */
export function parseLocalDateTime(text: string): number | null {
  const m = LOCAL_DATETIME.exec(text);
  if (!m) return null;
  const [y, mo, d, h, mi] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])];
  const ms = Date.UTC(y, mo - 1, d, h, mi);
  const back = new Date(ms);
  // Date.UTC rolls 2026-02-30 over to March: refuse dates that do not exist.
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23) return null;
  return ms;
}

/** Problems of a window spec as text, or null: used by the compiler (with positions) and the loader. */
export function windowProblem(w: WindowSpec): string | null {
  if (!isValidTimeZone(w.time_zone)) return `unknown time zone '${w.time_zone}' (expected an IANA name such as Europe/Berlin)`;
  const recurring = w.from !== undefined || w.to !== undefined || w.days !== undefined;
  const absolute = w.start !== undefined || w.end !== undefined;
  if (recurring === absolute) return 'give either days/from/to (recurring) or start/end (absolute)';
  if (recurring) {
    if (w.from === undefined || w.to === undefined) return 'a recurring window needs from and to';
    const from = parseHhmm(w.from);
    const to = parseHhmm(w.to);
    if (from === null || from === 1440) return `from '${w.from}' is not a local time HH:MM`;
    if (to === null) return `to '${w.to}' is not a local time HH:MM (or 24:00)`;
    if (from === to) return 'from and to are equal: the window would be empty';
    if (w.days !== undefined && w.days.length === 0) return 'days is empty: the window would never open';
    return null;
  }
  if (w.start === undefined || w.end === undefined) return 'an absolute window needs start and end';
  const s = parseLocalDateTime(w.start);
  const e = parseLocalDateTime(w.end);
  if (s === null) return `start '${w.start}' is not a local date-time YYYY-MM-DDTHH:MM`;
  if (e === null) return `end '${w.end}' is not a local date-time YYYY-MM-DDTHH:MM`;
  if (e <= s) return 'end is not after start';
  return null;
}

/** A window ready to answer "is this instant inside?" without allocating. */
export class CompiledWindow {
  readonly id: string;
  private readonly zone: ZoneClock;
  private readonly dayMask: number;
  private readonly fromMin: number;
  private readonly toMin: number;
  private readonly startMs: number;
  private readonly endMs: number;
  private readonly recurring: boolean;

  constructor(spec: WindowSpec, zone: ZoneClock) {
    const problem = windowProblem(spec);
    if (problem !== null) throw new Error(`window '${spec.id}': ${problem}`);
    this.id = spec.id;
    this.zone = zone;
    this.recurring = spec.from !== undefined;
    let mask = 0;
    for (const d of spec.days ?? WEEKDAYS) mask |= 1 << WEEKDAYS.indexOf(d);
    this.dayMask = mask;
    this.fromMin = this.recurring ? parseHhmm(spec.from!)! : 0;
    this.toMin = this.recurring ? parseHhmm(spec.to!)! : 0;
    this.startMs = this.recurring ? 0 : localToUtcMs(spec.time_zone, parseLocalDateTime(spec.start!)!);
    this.endMs = this.recurring ? 0 : localToUtcMs(spec.time_zone, parseLocalDateTime(spec.end!)!);
  }

  contains(ms: number): boolean {
    if (!this.recurring) return ms >= this.startMs && ms < this.endMs;
    const local = this.zone.localMs(ms);
    const day = Math.floor(local / DAY_MS);
    const minute = Math.floor((local - day * DAY_MS) / 60_000);
    const weekday = (((day + EPOCH_WEEKDAY) % 7) + 7) % 7;
    if (this.fromMin < this.toMin) {
      return (this.dayMask & (1 << weekday)) !== 0 && minute >= this.fromMin && minute < this.toMin;
    }
    // Past midnight: the evening part belongs to the listed day, the morning part to the day before.
    if (minute >= this.fromMin) return (this.dayMask & (1 << weekday)) !== 0;
    if (minute < this.toMin) return (this.dayMask & (1 << ((weekday + 6) % 7))) !== 0;
    return false;
  }
}

/** Compiles windows sharing one ZoneClock per time zone. */
export function compileWindows(specs: readonly WindowSpec[]): Map<string, CompiledWindow> {
  const zones = new Map<string, ZoneClock>();
  const out = new Map<string, CompiledWindow>();
  for (const w of specs) {
    let z = zones.get(w.time_zone);
    if (z === undefined) zones.set(w.time_zone, (z = new ZoneClock(w.time_zone)));
    out.set(w.id, new CompiledWindow(w, z));
  }
  return out;
}
