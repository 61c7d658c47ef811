// What this machine offers a model: RAM (honouring a container's cgroup limit), CPU cores, a rough memory
// bandwidth (what bounds token generation on a CPU), and GPU memory as node-llama-cpp reports it.
import { readFileSync } from "node:fs";
import { availableParallelism, cpus, freemem, totalmem } from "node:os";

export interface GpuInfo {
  /** node-llama-cpp backend in use: "cuda" | "vulkan" | "metal". */
  type: string;
  vramTotal: number;
  vramFree: number;
}

export interface HardwareInfo {
  ramTotal: number;
  /** Memory a new process can use without swapping (MemAvailable, capped by a cgroup limit). */
  ramAvailable: number;
  /** Set when a container memory limit is lower than physical RAM. */
  cgroupLimit?: number;
  cpuCores: number;
  cpuModel: string;
  /** Single-thread memcpy bandwidth in bytes/s, measured in ~50 ms. */
  memBandwidth: number;
  gpu: GpuInfo | null;
}

function readNumberFile(path: string): number | undefined {
  try {
    const s = readFileSync(path, "utf8").trim();
    if (s === "max") return undefined;
    const n = Number(s);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** MemAvailable from /proc/meminfo (Linux) — better than os.freemem(), which ignores reclaimable page cache. */
function memAvailable(): number {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync("/proc/meminfo", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    /* not Linux */
  }
  return freemem();
}

function cgroupLimits(): { limit?: number; used?: number } {
  const v2 = readNumberFile("/sys/fs/cgroup/memory.max");
  if (v2 !== undefined) return { limit: v2, used: readNumberFile("/sys/fs/cgroup/memory.current") };
  const v1 = readNumberFile("/sys/fs/cgroup/memory/memory.limit_in_bytes");
  // cgroup v1 reports "no limit" as a huge number
  if (v1 !== undefined && v1 < 2 ** 60)
    return { limit: v1, used: readNumberFile("/sys/fs/cgroup/memory/memory.usage_in_bytes") };
  return {};
}

/** memcpy bandwidth of one thread over a buffer larger than most caches (best of a few passes, so a busy
 * machine's worst moments do not count). */
export function measureMemBandwidth(bytes = 32 * 1024 * 1024): number {
  const a = Buffer.alloc(bytes, 1);
  const b = Buffer.alloc(bytes);
  let best = Infinity;
  for (let i = 0; i < 6; i++) {
    const t0 = process.hrtime.bigint();
    a.copy(b);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.min(best, dt);
  }
  // a copy reads and writes every byte
  return (2 * bytes) / best;
}

export async function detectGpu(): Promise<GpuInfo | null> {
  const { getLlama } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: "auto", build: "never" });
  if (!llama.gpu) return null;
  const vram = await llama.getVramState();
  return { type: String(llama.gpu), vramTotal: vram.total, vramFree: vram.free };
}

export async function detectHardware(opts: { gpu?: boolean } = {}): Promise<HardwareInfo> {
  const ramTotal = totalmem();
  let ramAvailable = memAvailable();
  const cg = cgroupLimits();
  let cgroupLimit: number | undefined;
  if (cg.limit !== undefined && cg.limit < ramTotal) {
    cgroupLimit = cg.limit;
    ramAvailable = Math.min(ramAvailable, cg.limit - (cg.used ?? 0));
  }
  const cpu = cpus();
  return {
    ramTotal: cgroupLimit ?? ramTotal,
    ramAvailable: Math.max(0, ramAvailable),
    cgroupLimit,
    cpuCores: availableParallelism(),
    cpuModel: cpu[0]?.model?.trim() ?? "unknown",
    memBandwidth: measureMemBandwidth(),
    gpu: opts.gpu === false ? null : await detectGpu(),
  };
}
