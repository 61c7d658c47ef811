import { defineConfig } from "vitest/config";

// Tests sit beside the code they protect (src/**/x.test.ts). Two cores in CI: keep parallelism modest.
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "web/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
  },
});
