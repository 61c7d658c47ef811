// Password hashing with scrypt (node:crypto, memory-hard): per-user random salt, cost stored with the hash so it can
// be raised later without invalidating existing passwords. Format: scrypt$N$r$p$salt_b64$hash_b64.
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { DajianError } from "../core/errors.js";

export interface ScryptCost {
  N: number;
  r: number;
  p: number;
}

/** 2^15 × 8 × 128 B = 32 MiB per hash: OWASP's scrypt minimum is N=2^17 at r=8 with p=1; we use N=2^15 by
 * default to bound a login burst on small servers, tunable via config security.scrypt / DAJIAN_SCRYPT_N. */
export const DEFAULT_COST: ScryptCost = { N: 2 ** 15, r: 8, p: 1 };
const KEYLEN = 32;

function scryptAsync(pw: string, salt: Buffer, cost: ScryptCost): Promise<Buffer> {
  const opts: ScryptOptions = { N: cost.N, r: cost.r, p: cost.p, maxmem: 256 * cost.N * cost.r + 1024 * 1024 };
  return new Promise((resolve, reject) =>
    scrypt(pw.normalize("NFC"), salt, KEYLEN, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export function costFromEnv(): ScryptCost {
  const n = Number(process.env.DAJIAN_SCRYPT_N);
  return Number.isInteger(n) && n >= 1024 && (n & (n - 1)) === 0 ? { ...DEFAULT_COST, N: n } : DEFAULT_COST;
}

export function checkPasswordStrength(pw: string): void {
  if ([...pw].length < 10)
    throw new DajianError("invalid_input", "password too short", "use at least 10 characters (a passphrase is best)");
  if ([...pw].length > 1024) throw new DajianError("invalid_input", "password too long", "use at most 1024 characters");
}

export async function hashPassword(pw: string, cost: ScryptCost = costFromEnv()): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(pw, salt, cost);
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

export async function verifyPassword(pw: string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  const salt = Buffer.from(parts[4], "base64");
  const want = Buffer.from(parts[5], "base64");
  const got = await scryptAsync(pw, salt, { N, r, p });
  return got.length === want.length && timingSafeEqual(got, want);
}

let dummy: Promise<string> | undefined;
/** Spend the same work as a real check for an unknown user, so response time does not reveal which names exist. */
export async function burnPasswordCheck(pw: string): Promise<void> {
  dummy ??= hashPassword("dajian-dummy-password");
  await verifyPassword(pw, await dummy);
}
