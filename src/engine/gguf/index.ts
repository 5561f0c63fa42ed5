/** The GGUF module's public surface: reader, Llama config/tensor checks, writer, types. */
export {
  checkSupportedType,
  getArray,
  getNumber,
  getString,
  type LlamaLayerTensors,
  type LlamaTensors,
  llamaConfigFromGguf,
  llamaHyperParameters,
  validateLlamaTensors,
} from './config';
export { type GgufReadOptions, readGguf, readTensorBytes } from './reader';
export * from './types';
export { type GgufKv, type GgufTensorIn, writeGguf } from './writer';
