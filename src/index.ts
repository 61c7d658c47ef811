// dajian library API. The CLI (src/cli) and the HTTP server (src/server) are thin shells over these exports.
export * from "./core/errors.js";
export * from "./core/home.js";
export * from "./core/config.js";
export * from "./core/progress.js";
export { VERSION } from "./core/version.js";
