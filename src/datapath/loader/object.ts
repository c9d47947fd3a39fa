// BpfObject: one ELF object from open (pre-load options: pinning, sizes,
// map reuse, autoload, initial values of .data/.rodata) through load to
// close; its programs and maps are valid until close().
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { native, type LoadTiming, type MapDesc, type NativeObjectHandle, type ProgramDesc } from './binding.js';
import type { FdOwner } from './fd.js';
import { BpfMap } from './map.js';
import { BpfProgram } from './program.js';

export interface OpenOptions {
  /** Pin (or reuse the pinned) non-internal maps at DIR/<map name>. DIR is created. */
  pinMaps?: string | { dir: string; only?: string[] };
  /** max_entries per map name, applied before load. */
  maxEntries?: Record<string, number>;
  /** Use an existing map (another object's, or opened from bpffs) for a map name. */
  reuseMaps?: Record<string, BpfMap>;
  /** Programs to skip (false) at load. */
  autoload?: Record<string, boolean>;
  /** Initial contents of internal maps, e.g. { 'edge_xdp.rodata': buf }. */
  initialValues?: Record<string, Buffer>;
  /** Kernel verifier log level for load (1 = full log, 4 = stats); the log is in loadLog(). */
  logLevel?: number;
}

export class BpfObject implements FdOwner {
  readonly path: string;
  #handle: NativeObjectHandle | null;
  #loaded = false;
  readonly #maps = new Map<string, BpfMap>();
  readonly #progs = new Map<string, BpfProgram>();

  private constructor(path: string, handle: NativeObjectHandle) {
    this.path = path;
    this.#handle = handle;
  }

  /** Opens an ELF object and applies the pre-load options; call load() next. */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    const abs = resolve(path);
    const handle = new (native().NativeObject)(abs, opts.logLevel !== undefined ? { logLevel: opts.logLevel } : {});
    const obj = new BpfObject(abs, handle);
    try {
      obj.configure(opts);
    } catch (e) {
      obj.close();
      throw e;
    }
    return obj;
  }

  /** open() then load(). */
  static load(path: string, opts: OpenOptions = {}): BpfObject {
    return BpfObject.open(path, opts).load();
  }

  get label(): string {
    return `BPF object ${this.path}`;
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  /** After loadAsync(): how long the kernel's work took, and how long the result waited for the JS thread. */
  loadTiming: LoadTiming | null = null;

  /**
   * Loads every (autoload) program and creates/reuses the maps. On failure
   * the object is closed and the error carries .verifierLog.
   */
  load(): this {
    const h = this.handle();
    try {
      h.load();
    } catch (e) {
      this.#handle = null;
      throw e;
    }
    this.#loaded = true;
    return this;
  }

  /**
   * load() with the kernel's work (map creation, verification) on a worker thread: the event loop
   * (and the rest of the agent's start-up) goes on meanwhile. Same result
   * and errors as load(); the object must not be used until it settles.
   */
  async loadAsync(): Promise<this> {
    const h = this.handle();
    try {
      this.loadTiming = await h.loadAsync();
    } catch (e) {
      this.#handle = null;
      throw e;
    }
    this.#loaded = true;
    return this;
  }

  /** open() then loadAsync(). */
  static async loadAsync(path: string, opts: OpenOptions = {}): Promise<BpfObject> {
    return BpfObject.open(path, opts).loadAsync();
  }

  /** libbpf output of load() (the verifier log when logLevel was set). */
  loadLog(): string {
    return this.handle().loadLog();
  }

  programs(): ProgramDesc[] {
    return this.handle().programs();
  }

  maps(): MapDesc[] {
    return this.handle().maps();
  }

  /** A loaded program by function name, or by ELF section when no name matches. */
  program(nameOrSection: string): BpfProgram {
    this.requireLoaded(`program(${nameOrSection})`);
    const all = this.programs();
    const d = all.find((p) => p.name === nameOrSection) ?? all.find((p) => p.section === nameOrSection);
    if (!d) {
      throw new Error(`no program '${nameOrSection}' in ${this.path} (programs: ${all.map((p) => `${p.name} [${p.section}]`).join(', ')})`);
    }
    if (d.fd < 0) throw new Error(`program '${d.name}' in ${this.path} was not loaded (autoload off)`);
    let p = this.#progs.get(d.name);
    if (!p) {
      p = BpfProgram.fromObject(d, this);
      this.#progs.set(d.name, p);
    }
    return p;
  }

  /** A map of the loaded object by name (internal maps as libbpf names them, e.g. 'obj.rodata'). */
  map(name: string): BpfMap {
    this.requireLoaded(`map(${name})`);
    const cached = this.#maps.get(name);
    if (cached) return cached;
    const all = this.maps();
    const d = all.find((m) => m.name === name);
    if (!d) throw new Error(`no map '${name}' in ${this.path} (maps: ${all.map((m) => m.name).join(', ')})`);
    const m = BpfMap.fromObjectFd(d.fd, d.name, this);
    this.#maps.set(name, m);
    return m;
  }

  /** Closes the object and every program/map fd it owns (attached programs stay attached). */
  close(): void {
    this.#handle?.close();
    this.#handle = null;
  }

  private handle(): NativeObjectHandle {
    if (!this.#handle) throw new Error(`${this.label} is closed`);
    return this.#handle;
  }

  private requireLoaded(what: string): void {
    this.handle();
    if (!this.#loaded) throw new Error(`${what}: ${this.label} is not loaded yet (call load())`);
  }

  private configure(opts: OpenOptions): void {
    const h = this.handle();
    const mapNames = new Set(this.maps().map((m) => m.name));
    const requireMap = (name: string, opt: string): void => {
      if (!mapNames.has(name)) throw new Error(`${opt}: no map '${name}' in ${this.path} (maps: ${[...mapNames].join(', ')})`);
    };
    for (const [name, n] of Object.entries(opts.maxEntries ?? {})) {
      requireMap(name, 'maxEntries');
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`maxEntries.${name} must be a positive integer, got ${n}`);
      h.setMaxEntries(name, n);
    }
    if (opts.pinMaps !== undefined) {
      const { dir, only } = typeof opts.pinMaps === 'string' ? { dir: opts.pinMaps, only: undefined } : opts.pinMaps;
      only?.forEach((n) => requireMap(n, 'pinMaps.only'));
      mkdirSync(dir, { recursive: true });
      for (const m of this.maps()) {
        if (m.internal || (only && !only.includes(m.name))) continue;
        h.setPinPath(m.name, join(dir, m.name));
      }
    }
    for (const [name, map] of Object.entries(opts.reuseMaps ?? {})) {
      requireMap(name, 'reuseMaps');
      h.reuseMapFd(name, map.fd);
    }
    for (const [name, on] of Object.entries(opts.autoload ?? {})) h.setAutoload(name, on);
    for (const [name, buf] of Object.entries(opts.initialValues ?? {})) {
      requireMap(name, 'initialValues');
      h.setInitialValue(name, buf);
    }
  }
}
