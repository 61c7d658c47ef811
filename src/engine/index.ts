// ggml from TypeScript (koffi over node-llama-cpp's prebuilt libraries): contexts, tensors, graphs, autograd, AdamW.
export {
  Engine,
  Context,
  Tensor,
  Graph,
  type BackendInfo,
  type ContextOptions,
  type RopeOptions,
  type Shape,
} from "./ggml.js";
export { loadGgml, ggmlLibDir } from "./ffi.js";
