export { BYTE_TO_CHAR, toByteLevel } from './bytes';
export {
  type DecodeOptions,
  type EncodeOptions,
  LLAMA3_PRE_NAMES,
  Llama3Tokenizer,
  type StreamDecoder,
  TokenType,
} from './llama3';
export { LLAMA3_PATTERN, splitLlama3 } from './pretokenize';
