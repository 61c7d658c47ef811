// UI strings in Chinese and English. The default follows the browser language; the choice is remembered.
export type Lang = "zh" | "en";

const en = {
  title: "Knowledge assistant",
  kbs: "Knowledge bases",
  newKb: "New knowledge base",
  newKbPlaceholder: "name, e.g. handbook",
  create: "Create",
  noKbs: "No knowledge base yet. Create one to start.",
  documents: "Documents",
  document: "Document",
  noDocs: "No documents yet. Upload PDF, Word, Excel, PowerPoint, HTML, Markdown or text files.",
  upload: "Upload documents",
  uploading: "Uploading",
  ingesting: "Indexing",
  queued: "Waiting",
  done: "Ready",
  failed: "Failed",
  chunks: "chunks",
  askPlaceholder: "Ask a question about the documents…",
  ask: "Ask",
  stop: "Stop",
  thinking: "Searching the documents…",
  emptyChat:
    "Ask anything about the documents in this knowledge base. Answers cite their sources: click a [n] to see the passage.",
  chooseKb: "Choose a knowledge base",
  sources: "Sources",
  source: "Source",
  page: "page",
  close: "Close",
  download: "Download original",
  extractiveTitle: "Extractive mode — no language model configured",
  extractiveBody:
    "Answers are the best-matching sentences quoted from your documents. To get written answers, add a model: `dajian pull hf:ORG/REPO/FILE.gguf` (local) or `dajian models add NAME --provider deepseek` with an API key, then restart `dajian serve`.",
  noAnswer: "Not found in the documents",
  newChat: "New conversation",
  delete: "Delete",
  confirmDeleteDoc: "Delete this document from the knowledge base?",
  error: "Error",
  language: "中文",
  languageLabel: "Switch language",
  you: "You",
  assistant: "Assistant",
  passage: "Quoted passage",
  tooLarge: "File is larger than the upload limit",
  signInTitle: "Sign in",
  signInSso: "Sign in with single sign-on (SSO)",
  signInHint: "This server requires an account. Ask an administrator to create one (`dajian users add NAME`).",
  userName: "User name",
  password: "Password",
  signIn: "Sign in",
  signingIn: "Signing in…",
  signOut: "Sign out",
  signedInAs: "Signed in as",
};

const zh: typeof en = {
  title: "知识库助手",
  kbs: "知识库",
  newKb: "新建知识库",
  newKbPlaceholder: "名称，例如 handbook",
  create: "创建",
  noKbs: "还没有知识库。先创建一个。",
  documents: "文档",
  document: "文档",
  noDocs: "还没有文档。可上传 PDF、Word、Excel、PowerPoint、HTML、Markdown 或文本文件。",
  upload: "上传文档",
  uploading: "上传中",
  ingesting: "索引中",
  queued: "排队中",
  done: "已就绪",
  failed: "失败",
  chunks: "个片段",
  askPlaceholder: "就文档内容提问…",
  ask: "提问",
  stop: "停止",
  thinking: "正在检索文档…",
  emptyChat: "就该知识库中的文档提问。回答会注明出处：点击 [n] 查看原文段落。",
  chooseKb: "选择知识库",
  sources: "出处",
  source: "出处",
  page: "第",
  close: "关闭",
  download: "下载原文件",
  extractiveTitle: "摘录模式 — 尚未配置语言模型",
  extractiveBody:
    "回答为从文档中摘录的最相关句子。如需生成式回答，请添加模型：`dajian pull hf:ORG/REPO/FILE.gguf`（本地）或 `dajian models add NAME --provider deepseek` 并设置 API 密钥，然后重启 `dajian serve`。",
  noAnswer: "文档中未找到答案",
  newChat: "新对话",
  delete: "删除",
  confirmDeleteDoc: "从知识库中删除该文档？",
  error: "错误",
  language: "English",
  languageLabel: "切换语言",
  you: "你",
  assistant: "助手",
  passage: "引用段落",
  tooLarge: "文件超过上传大小限制",
  signInTitle: "登录",
  signInSso: "使用单点登录（SSO）",
  signInHint: "此服务器需要账号登录。请联系管理员创建账号（`dajian users add NAME`）。",
  userName: "用户名",
  password: "密码",
  signIn: "登录",
  signingIn: "正在登录…",
  signOut: "退出登录",
  signedInAs: "当前用户",
};

export type Strings = typeof en;
export const STRINGS: Record<Lang, Strings> = { en, zh };

export function initialLang(): Lang {
  const saved = globalThis.localStorage?.getItem("dajian.lang");
  if (saved === "zh" || saved === "en") return saved;
  return (globalThis.navigator?.language ?? "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function pageLabel(t: Strings, lang: Lang, page: number): string {
  return lang === "zh" ? `第 ${page} 页` : `${t.page} ${page}`;
}
