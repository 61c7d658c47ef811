// A checkpoint written by PyTorch (fixtures/torch_llama.py: a Llama/Qwen2 in torch with transformers' semantics)
// converts to a GGUF whose next-token distributions in llama.cpp equal PyTorch's forward pass. Skipped, with the
// reason in the test name, where python3 with torch is not installed (CI).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BpeTokenizer } from "../tokenizer/index.js";
import { trainBpe } from "../tokenizer/index.js";
import { TINY_CORPUS } from "../train/tiny-model.js";
import { convertHfCheckpoint } from "./convert-hf.js";
import { llamaCppProbs, maxAbsDiff, smallConfig } from "./fixtures.test-helper.js";
import { hfConfigJson, type HfArchitecture } from "./hf-model.js";
import { hfTokenizerConfig, hfTokenizerJson } from "./hf-tokenizer.js";

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "torch_llama.py");
const probe = spawnSync("python3", ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
const torchVersion = probe.status === 0 ? probe.stdout.trim() : undefined;
const why = torchVersion ? `torch ${torchVersion}` : "SKIPPED: python3 with torch is not installed";

let dir: string;
let llama: Llama;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-torch-"));
  if (torchVersion) llama = await getLlama({ gpu: false });
});
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!torchVersion)(`checkpoints written by PyTorch (${why})`, () => {
  const vocab = trainBpe(TINY_CORPUS, { vocabSize: 380, pre: "qwen2", minFrequency: 1 });
  const text = "The quick brown fox 你好，世界 123 知识库!";
  const ARCHS: HfArchitecture[] = ["LlamaForCausalLM", "Qwen2ForCausalLM"];
  let torchProbs: Record<string, number[][]>;
  const ids = new BpeTokenizer(vocab).encode(text);

  beforeAll(() => {
    const args: string[] = [];
    for (const arch of ARCHS) {
      const hf = join(dir, arch);
      mkdirSync(hf);
      const config = smallConfig(vocab.tokens.length, {
        ropeTheta: arch === "Qwen2ForCausalLM" ? 1e6 : 1e4,
        normEps: 1e-6,
      });
      writeFileSync(join(hf, "config.json"), JSON.stringify(hfConfigJson({ hfArch: arch, config })));
      writeFileSync(join(hf, "tokenizer.json"), JSON.stringify(hfTokenizerJson(vocab)));
      writeFileSync(join(hf, "tokenizer_config.json"), JSON.stringify(hfTokenizerConfig(vocab)));
      args.push(hf, arch);
    }
    const out = execFileSync("python3", [SCRIPT, "3", JSON.stringify(ids), ...args], {
      encoding: "utf8",
      maxBuffer: 64 << 20,
    });
    torchProbs = (JSON.parse(out) as { probs: Record<string, number[][]> }).probs;
  });

  for (const arch of ARCHS) {
    it(`${arch}: llama.cpp on the converted GGUF gives PyTorch's next-token distributions`, async () => {
      const gguf = join(dir, `${arch}.gguf`);
      convertHfCheckpoint(join(dir, arch), gguf, { type: "F32" });
      const got = await llamaCppProbs(llama, gguf, text);
      expect(got.ids).toEqual(ids);
      const d = maxAbsDiff(got.probs, torchProbs[join(dir, arch)]);
      console.log(`${arch}: max |Δp| llama.cpp vs PyTorch ${d.toExponential(2)} over ${ids.length} positions`);
      expect(d).toBeLessThan(1e-4);
    });
  }
});
