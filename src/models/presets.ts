// Named presets for OpenAI-compatible providers: base URL, the env var that usually holds the key, a default
// model and context size. Users still choose the model; the preset only saves typing and typos.

export interface ProviderPreset {
  baseURL: string;
  /** Env var conventionally holding the key; undefined = the server needs no key (local servers). */
  apiKeyEnv?: string;
  defaultModel: string;
  contextSize: number;
  /** A server on the user's own machine or LAN (so the outbound client must allow private addresses). */
  local: boolean;
  label: string;
}

export const PROVIDER_PRESETS: Record<string, ProviderPreset> = {
  openai: {
    baseURL: "https://api.openai.com/v1",
    apiKeyEnv: "OPENAI_API_KEY",
    defaultModel: "gpt-4o-mini",
    contextSize: 128_000,
    local: false,
    label: "OpenAI",
  },
  deepseek: {
    baseURL: "https://api.deepseek.com/v1",
    apiKeyEnv: "DEEPSEEK_API_KEY",
    defaultModel: "deepseek-chat",
    contextSize: 64_000,
    local: false,
    label: "DeepSeek",
  },
  zhipu: {
    baseURL: "https://open.bigmodel.cn/api/paas/v4",
    apiKeyEnv: "ZHIPUAI_API_KEY",
    defaultModel: "glm-4-flash",
    contextSize: 128_000,
    local: false,
    label: "Zhipu GLM (智谱)",
  },
  qwen: {
    baseURL: "https://dashscope.aliyuncs.com/compatible-mode/v1",
    apiKeyEnv: "DASHSCOPE_API_KEY",
    defaultModel: "qwen-plus",
    contextSize: 128_000,
    local: false,
    label: "Qwen / DashScope compatible mode (通义千问)",
  },
  moonshot: {
    baseURL: "https://api.moonshot.cn/v1",
    apiKeyEnv: "MOONSHOT_API_KEY",
    defaultModel: "moonshot-v1-8k",
    contextSize: 8_192,
    local: false,
    label: "Moonshot (Kimi)",
  },
  ollama: {
    baseURL: "http://127.0.0.1:11434/v1",
    defaultModel: "qwen2.5:7b",
    contextSize: 4_096,
    local: true,
    label: "Ollama",
  },
  vllm: {
    baseURL: "http://127.0.0.1:8000/v1",
    apiKeyEnv: "VLLM_API_KEY",
    defaultModel: "Qwen/Qwen2.5-7B-Instruct",
    contextSize: 32_768,
    local: true,
    label: "vLLM",
  },
  "llamacpp-server": {
    baseURL: "http://127.0.0.1:8080/v1",
    apiKeyEnv: "LLAMA_API_KEY",
    defaultModel: "default",
    contextSize: 4_096,
    local: true,
    label: "llama.cpp server",
  },
};
// "dashscope" is what many users call the Qwen endpoint.
PROVIDER_PRESETS.dashscope = PROVIDER_PRESETS.qwen;
