// JSON schemas for every route (Fastify validates with Ajv before a handler runs; type coercion is off, so a wrong
// type is a 400 that names the field). Unknown OpenAI options are tolerated, known ones are checked strictly.
import type { FastifySchema } from "fastify";

const NAME = { type: "string", minLength: 1, maxLength: 128 } as const;
const nullable = (t: string, extra: Record<string, unknown> = {}) => ({ type: [t, "null"], ...extra });

const contentPart = {
  type: "object",
  required: ["type"],
  properties: { type: { type: "string" }, text: { type: "string" } },
} as const;

const message = {
  type: "object",
  required: ["role"],
  properties: {
    role: { type: "string", enum: ["system", "developer", "user", "assistant", "tool"] },
    content: { anyOf: [{ type: "string" }, { type: "array", items: contentPart }, { type: "null" }] },
    name: { type: "string" },
  },
} as const;

export const chatCompletionSchema: FastifySchema = {
  body: {
    type: "object",
    required: ["model", "messages"],
    properties: {
      model: NAME,
      messages: { type: "array", minItems: 1, maxItems: 1000, items: message },
      stream: nullable("boolean"),
      stream_options: {
        anyOf: [{ type: "object", properties: { include_usage: { type: "boolean" } } }, { type: "null" }],
      },
      temperature: nullable("number", { minimum: 0, maximum: 2 }),
      top_p: nullable("number", { minimum: 0, maximum: 1 }),
      seed: nullable("integer"),
      stop: {
        anyOf: [{ type: "string" }, { type: "array", maxItems: 4, items: { type: "string" } }, { type: "null" }],
      },
      max_tokens: nullable("integer", { minimum: 1 }),
      max_completion_tokens: nullable("integer", { minimum: 1 }),
      n: nullable("integer", { minimum: 1, maximum: 1 }),
      response_format: {
        anyOf: [
          {
            type: "object",
            required: ["type"],
            properties: {
              type: { type: "string", enum: ["text", "json_object", "json_schema"] },
              json_schema: {
                type: "object",
                required: ["name"],
                properties: { name: { type: "string" }, schema: { type: "object" }, strict: nullable("boolean") },
              },
            },
          },
          { type: "null" },
        ],
      },
      user: { type: "string" },
      /** dajian extension for `kb:` models: continue a stored conversation. */
      conversation_id: { type: "string", maxLength: 64 },
    },
  },
};

export const embeddingsSchema: FastifySchema = {
  body: {
    type: "object",
    required: ["model", "input"],
    properties: {
      model: NAME,
      input: {
        anyOf: [
          { type: "string", minLength: 1 },
          { type: "array", minItems: 1, maxItems: 2048, items: { type: "string", minLength: 1 } },
        ],
      },
      encoding_format: { type: "string", enum: ["float", "base64"] },
      dimensions: { type: "integer", minimum: 1 },
      user: { type: "string" },
    },
  },
};

export const modelParamSchema: FastifySchema = {
  params: { type: "object", required: ["model"], properties: { model: NAME } },
};

const kbParams = { type: "object", required: ["name"], properties: { name: NAME } } as const;

export const kbParamSchema: FastifySchema = { params: kbParams };

export const kbCreateSchema: FastifySchema = {
  body: {
    type: "object",
    required: ["name"],
    additionalProperties: false,
    properties: { name: NAME, description: { type: "string", maxLength: 2000 } },
  },
};

export const docParamSchema: FastifySchema = {
  params: {
    type: "object",
    required: ["name", "doc"],
    properties: { name: NAME, doc: { type: "string", minLength: 1, maxLength: 1024 } },
  },
};

export const idParamSchema: FastifySchema = {
  params: { type: "object", required: ["id"], properties: { id: { type: "string", minLength: 1, maxLength: 64 } } },
};

export const searchSchema: FastifySchema = {
  params: kbParams,
  body: {
    type: "object",
    required: ["query"],
    additionalProperties: false,
    properties: {
      query: { type: "string", minLength: 1, maxLength: 4000 },
      topK: { type: "integer", minimum: 1, maximum: 100 },
      mode: { type: "string", enum: ["hybrid", "keyword", "vector"] },
    },
  },
};

export const askSchema: FastifySchema = {
  params: kbParams,
  body: {
    type: "object",
    required: ["question"],
    additionalProperties: false,
    properties: {
      question: { type: "string", minLength: 1, maxLength: 8000 },
      conversationId: { type: "string", minLength: 1, maxLength: 64 },
      model: NAME,
      topK: { type: "integer", minimum: 1, maximum: 50 },
      stream: { type: "boolean" },
    },
  },
};

export const conversationListSchema: FastifySchema = {
  querystring: {
    type: "object",
    additionalProperties: false,
    properties: { kb: NAME },
  },
};
