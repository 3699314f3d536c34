/** Embedding models: configs, tokenizers, BERT and NomicBERT encoders. */
export * from "./config.js";
export * from "./embedding-model.js";
export { type ParamSpec, paramSpecs } from "./params.js";
export { Tokenizer } from "./tokenizer.js";
