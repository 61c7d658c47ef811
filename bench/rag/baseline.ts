// The LangChain.js baseline: Langchain-Chatchat's default splitter settings (RecursiveCharacterTextSplitter,
// 750 characters, 150 overlap) over the same extracted document text dajian indexed, ranked by LangChain's
// BM25Retriever. Two query tokenisations: LangChain's own (lower case, split on whitespace) and, for Chinese,
// Chatchat's (jieba search mode), so dajian is compared with the stronger of the two.
import { Document } from "@langchain/core/documents";
import { BM25Retriever } from "@langchain/community/retrievers/bm25";
import { RecursiveCharacterTextSplitter } from "@langchain/textsplitters";
import { Jieba } from "@node-rs/jieba";
import { dict } from "@node-rs/jieba/dict.js";
import type { Hit } from "./metrics.js";

export type BaselineVariant = "langchain" | "langchain+jieba";

export const BASELINE_CHUNK = { chunkSize: 750, chunkOverlap: 150 };

export interface Baseline {
  chunks: number;
  splitMs: number;
  search(question: string): Promise<Hit[]>;
}

let jieba: Jieba | undefined;

export async function buildBaseline(
  docs: { name: string; text: string }[],
  variant: BaselineVariant,
  k: number,
): Promise<Baseline> {
  const t0 = performance.now();
  const splitter = new RecursiveCharacterTextSplitter(BASELINE_CHUNK);
  const chunks: Document[] = await splitter.createDocuments(
    docs.map((d) => d.text),
    docs.map((d) => ({ document: d.name })),
  );
  const splitMs = performance.now() - t0;
  const retriever = BM25Retriever.fromDocuments(chunks, { k });
  if (variant === "langchain+jieba") {
    jieba ??= Jieba.withDict(dict);
    const j = jieba;
    // Chatchat passes jieba.lcut_for_search as the BM25 preprocess function; preprocessFunc is LangChain.js's hook.
    (retriever as unknown as { preprocessFunc: (t: string) => string[] }).preprocessFunc = (t: string) =>
      j.cutForSearch(t.toLowerCase(), true);
  }
  return {
    chunks: chunks.length,
    splitMs,
    async search(question: string): Promise<Hit[]> {
      const found = await retriever.invoke(question);
      return found.map((d) => ({ text: d.pageContent, document: String(d.metadata.document) }));
    },
  };
}
