#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/cli/main.js (built by `npm run build`).
import("../dist/cli/main.js").catch((err) => {
  if (err && err.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes("dist/cli/main.js")) {
    console.error("dajian: not built yet. Run `npm run build` (or `npm start`) in the dajian folder first.");
    process.exit(1);
  }
  throw err;
});
