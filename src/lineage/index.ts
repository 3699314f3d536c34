export * from "./chain.js";
export * from "./identity.js";
export * from "./methods.js";
export * from "./migrate.js";
export * from "./record.js";
export * from "./registry.js";
