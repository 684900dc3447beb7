// Drives a running daemon with the Node clients Void uses (openai-node 4.x, ollama-js 0.5.x),
// making the calls Void, Continue and Copilot make. Prints one JSON object with what came back;
// tests/test_node_clients.py checks it. Usage: node clients.mjs http://127.0.0.1:PORT
import { Ollama } from "ollama";
import OpenAI from "openai";

const base = process.argv[2];
const ollama = new Ollama({ host: base });
const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: "noop", maxRetries: 0 });
const out = {};

async function collect(iterator, pick) {
  const parts = [];
  for await (const part of iterator) parts.push(pick(part));
  return parts;
}

// ollama-js: what Void's model list, Continue's /api/show and Void's autocomplete do.
const tags = await ollama.list();
out.tags = tags.models.map((m) => m.name);
const shown = await ollama.show({ model: "echo:latest" });
out.show = { capabilities: shown.capabilities, suffixTemplate: shown.template.includes(".Suffix") };
const chatStream = await ollama.chat({
  model: "echo:latest",
  messages: [{ role: "user", content: "hello from node" }],
  stream: true,
});
const chatParts = await collect(chatStream, (p) => [p.message.content, p.done, p.model]);
out.ollamaChat = {
  text: chatParts.map((p) => p[0]).join(""),
  doneLast: chatParts.at(-1)[1],
  model: chatParts.at(-1)[2],
};
const whole = await ollama.chat({
  model: "echo",
  messages: [{ role: "user", content: "no stream" }],
  stream: false,
});
out.ollamaChatWhole = whole.message.content;
const fim = await ollama.generate({
  model: "echo:latest",
  prompt: "const x = ",
  suffix: ";\n",
  options: { stop: ["\n\n"], num_predict: 32 },
  raw: true,
  stream: true,
});
out.ollamaGenerate = (await collect(fim, (p) => p.response)).join("");
const embedded = await ollama.embed({ model: "echo", input: ["alpha"] });
out.ollamaEmbed = embedded.embeddings[0];
const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
const toolChat = await ollama.chat({
  model: "tooly",
  messages: [{ role: "user", content: "weather?" }],
  tools,
  stream: true,
});
const toolLines = await collect(toolChat, (p) => p.message.tool_calls || []);
out.ollamaToolArguments = toolLines.flat()[0].function.arguments;

// openai-node: Void's chat (stream, tools) and Continue's completions/embeddings.
const stream = await openai.chat.completions.create({
  model: "echo:latest",
  messages: [{ role: "user", content: "hi from openai-node" }],
  stream: true,
});
const deltas = await collect(stream, (c) => c.choices[0]?.delta?.content ?? "");
out.openaiChat = deltas.join("");
const toolStream = await openai.chat.completions.create({
  model: "tooly",
  messages: [{ role: "user", content: "weather?" }],
  tools,
  stream: true,
});
// Void reads index 0 only and concatenates every fragment it sees.
let name = "", id = "", args = "", finish = null;
for await (const chunk of toolStream) {
  const choice = chunk.choices[0];
  if (!choice) continue;
  for (const call of choice.delta.tool_calls ?? []) {
    if (call.index !== 0) continue;
    name += call.function?.name ?? "";
    id += call.id ?? "";
    args += call.function?.arguments ?? "";
  }
  finish = choice.finish_reason ?? finish;
}
out.openaiTool = { name, id, args, finish };
const completion = await openai.completions.create({
  model: "echo",
  prompt: "def f():",
  suffix: "  pass",
  stream: true,
  stream_options: { include_usage: true },
});
const pieces = await collect(completion, (c) => [c.choices[0]?.text ?? "", c.usage ?? null]);
out.openaiCompletion = { text: pieces.map((p) => p[0]).join(""), usage: pieces.at(-1)[1] };
const vectors = await openai.embeddings.create({ model: "echo", input: "alpha" });
out.openaiEmbedding = Array.from(vectors.data[0].embedding);

const models = await openai.models.list();
out.openaiModels = models.data.map((m) => m.id);

console.log(JSON.stringify(out));
