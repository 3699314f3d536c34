/** qdc's tensor engine: libtorch through the project's N-API addon. */
export { enableGrad, isGradEnabled, noGrad } from "./autograd.js";
export * from "./create.js";
export { cpuCache, cuda, defaultDevice, engineInfo, getNumThreads, liveTensors, setNumThreads } from "./device.js";
export {
  allGather,
  allReduceGradients,
  barrier,
  destroyProcessGroup,
  distributedAvailable,
  type GroupOptions,
  initProcessGroup,
  processGroup,
} from "./distributed.js";
export { DTYPES, type DType, ITEM_SIZE, isDType, isFloating, type TypedArray } from "./dtype.js";
export * from "./functional.js";
export { AdamW, type AdamWHyper, clipGradNorm, type ParamGroup } from "./optim.js";
export { getRngState, manualSeed, setRngState } from "./random.js";
export * from "./safetensors.js";
export { keep, scopeDepth, tidy } from "./scope.js";
export { type Device, type Dims, type Scalar, Tensor, type TensorLike } from "./tensor.js";
