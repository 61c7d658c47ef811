// llama.cpp's own tokenizer test vectors (models/ggml-vocab-*.gguf + .inp/.out), as tests/test-tokenizer-0 runs them.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GgufReader } from "../gguf/index.js";
import { BpeTokenizer } from "./bpe.js";
import { llamaCppSourceDir } from "./llama-src.js";
import { readVocab } from "./vocab.js";

const models = join(llamaCppSourceDir(), "models");

function cases(name: string): Array<{ text: string; ids: number[] }> {
  const inp = readFileSync(join(models, `ggml-vocab-${name}.gguf.inp`), "utf8").split("\n__ggml_vocab_test__\n");
  const out = readFileSync(join(models, `ggml-vocab-${name}.gguf.out`), "utf8").split("\n");
  // the .inp ends with a separator; one output line per input
  return inp.slice(0, out.length - 1).map((text, i) => ({
    text,
    ids: out[i].trim() === "" ? [] : out[i].trim().split(/\s+/).map(Number),
  }));
}

describe.each(["qwen2", "llama-bpe", "gpt-2"])("llama.cpp test vectors: %s", (name) => {
  it("tokenizes every input exactly like llama.cpp and decodes back", () => {
    const r = GgufReader.open(join(models, `ggml-vocab-${name}.gguf`));
    const vocab = readVocab(r);
    r.close();
    const tok = new BpeTokenizer(vocab);
    const cs = cases(name);
    expect(cs.length).toBeGreaterThan(30);
    const failures: string[] = [];
    for (const c of cs) {
      const got = tok.encode(c.text);
      if (got.join(" ") !== c.ids.join(" "))
        failures.push(`${JSON.stringify(c.text)}: got ${got.join(" ")} want ${c.ids.join(" ")}`);
      else if (tok.decode(got) !== c.text)
        failures.push(`${JSON.stringify(c.text)}: decodes to ${JSON.stringify(tok.decode(got))}`);
    }
    expect(failures).toEqual([]);
  });
});
