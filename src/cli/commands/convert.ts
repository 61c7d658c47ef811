// `dajian convert` (Hugging Face checkpoint or PEFT LoRA folder → GGUF) and `dajian export --format hf|gguf`
// (GGUF → Hugging Face folder, or the air-gap bundle of `models export`). Thin shells over src/convert.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { DajianError } from "../../core/errors.js";
import { terminalProgress } from "../../core/progress.js";
import { convertHfCheckpoint, parseConvertType } from "../../convert/convert-hf.js";
import { exportHfCheckpoint } from "../../convert/export-hf.js";
import { HF_ARCHITECTURES, type HfArchitecture } from "../../convert/hf-model.js";
import { convertPeftLora } from "../../convert/lora.js";
import type { SafeDtype } from "../../convert/safetensors.js";
import { exportModel, importModel } from "../../models/import.js";
import { localModelFile } from "../model-file.js";
import { action, homeOf, printJson, withHome } from "../util.js";

export function registerConvert(program: Command): void {
  withHome(
    program
      .command("convert <src> <out>")
      .description("convert a Hugging Face checkpoint folder (or a PEFT LoRA adapter folder) to GGUF, no Python")
      .option("--type <type>", "F32 | F16 | Q8_0 (default F16)")
      .option("--name <name>", "general.name in the GGUF (and the registered model name)")
      .option("--base <model>", "LoRA mode: the base model (GGUF file or HF folder) the adapter belongs to")
      .option("--register", "register the converted model in dajian's model list (like `models import`)")
      .option("--force", "overwrite OUT")
      .option("--json", "print JSON"),
  ).action(
    action(async (src: string, out: string, _opts: unknown, cmd: Command) => {
      const o = cmd.opts() as {
        type?: string;
        name?: string;
        base?: string;
        register?: boolean;
        force?: boolean;
        json?: boolean;
      };
      if (existsSync(join(src, "adapter_config.json"))) {
        if (!o.base)
          throw new DajianError(
            "invalid_input",
            `${src} is a LoRA adapter`,
            "pass --base BASE.gguf (or the HF base folder)",
          );
        const r = convertPeftLora(src, out, { base: o.base, overwrite: o.force, name: o.name });
        if (o.json) return printJson(r);
        process.stdout.write(
          `${r.output}: LoRA adapter for ${r.architecture}, rank ${r.rank}, alpha ${r.alpha}, ${r.modules.length} modules\n` +
            `use it with: dajian models add NAME --gguf BASE.gguf --adapter ${r.output}   (or llama.cpp --lora)\n`,
        );
        return;
      }
      if (o.base) throw new DajianError("invalid_input", "--base is only for LoRA adapter folders", "drop --base");
      const bar = terminalProgress();
      const r = convertHfCheckpoint(src, out, {
        type: o.type ? parseConvertType(o.type) : undefined,
        name: o.name,
        overwrite: o.force,
        onProgress: bar,
      });
      bar.end();
      const registered = o.register ? await importModel(homeOf(cmd), out, { name: o.name }) : undefined;
      if (o.json) return printJson({ ...r, registered: registered?.name });
      process.stdout.write(
        `${r.output}: ${r.hfArchitecture} → ${r.architecture} ${r.type}, ${(r.parameters / 1e6).toFixed(1)}M params, ` +
          `vocab ${r.vocabSize} (${r.pre}), chat template ${r.hasChatTemplate ? "yes" : "no"}\n` +
          (registered ? `registered as ${registered.name}\n` : ""),
      );
    }),
  );

  withHome(
    program
      .command("export <model> <dir>")
      .description(
        "export a GGUF (path or local model name) as a Hugging Face folder (--format hf) or an import bundle",
      )
      .requiredOption("--format <format>", "hf (config.json, safetensors, tokenizer.json) | gguf (as `models export`)")
      .option("--dtype <dtype>", "hf: F32 | F16 | BF16 (default F32 for F32 models, else F16)")
      .option("--hf-arch <arch>", `hf: ${HF_ARCHITECTURES.join(" | ")} (llama GGUFs default to LlamaForCausalLM)`)
      .option("--max-shard-mb <n>", "hf: split the safetensors into shards of at most N MB")
      .option("--json", "print JSON"),
  ).action(
    action(async (model: string, dir: string, _opts: unknown, cmd: Command) => {
      const o = cmd.opts() as { format: string; dtype?: string; hfArch?: string; maxShardMb?: string; json?: boolean };
      if (o.format === "gguf") {
        const bar = terminalProgress();
        const r = await exportModel(homeOf(cmd), model, dir, { onProgress: bar });
        bar.end();
        if (o.json) return printJson({ dir: r.dir, manifest: { ...r.manifest, chatTemplate: undefined } });
        process.stdout.write(`exported ${model} to ${r.dir} (${r.manifest.file})\n`);
        return;
      }
      if (o.format !== "hf") throw new DajianError("invalid_input", `unknown --format ${o.format}`, "use hf or gguf");
      const dtype = o.dtype?.toUpperCase();
      if (dtype && !["F32", "F16", "BF16"].includes(dtype))
        throw new DajianError("invalid_input", `unknown --dtype ${o.dtype}`, "use F32, F16 or BF16");
      if (o.hfArch && !HF_ARCHITECTURES.includes(o.hfArch as HfArchitecture))
        throw new DajianError("invalid_input", `unknown --hf-arch ${o.hfArch}`, `use ${HF_ARCHITECTURES.join(", ")}`);
      const mb = o.maxShardMb === undefined ? undefined : Number(o.maxShardMb);
      if (mb !== undefined && !(mb > 0))
        throw new DajianError("invalid_input", `--max-shard-mb must be positive`, "pass e.g. --max-shard-mb 2000");
      const bar = terminalProgress();
      const r = exportHfCheckpoint(localModelFile(cmd, model), dir, {
        dtype: dtype as SafeDtype | undefined,
        hfArchitecture: o.hfArch as HfArchitecture | undefined,
        maxShardBytes: mb === undefined ? undefined : mb * 1e6,
        onProgress: bar,
      });
      bar.end();
      if (o.json) return printJson(r);
      process.stdout.write(`${r.dir}: ${r.hfArchitecture} ${r.dtype}, ${r.tensors} tensors in ${r.files.join(", ")}\n`);
    }),
  );
}
