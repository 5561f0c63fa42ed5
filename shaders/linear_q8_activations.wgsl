// The quantized activations the integer decoders' unit_dot2 reads (workgroup memory), placed
// after a q4_0 / q8_0 / q6_K decoder in the linear and embedding kernels (the embedding never
// touches them, so they cost it nothing). Filled by linear_matvec_q8.wgsl's prologue.

/** Units of x quantized per chunk: 36·CU bytes of workgroup memory (+ the mat-vec's lane sums). */
override CU: u32 = 128u;

var<workgroup> xq: array<u32, CU * 8u>; // int8 activations, four per u32, element order
var<workgroup> xd: array<f32, CU>; // per-unit scale d

/**
 * Σ of the quantized activation unit ub's 32 int8 values: the offset term of the types whose
 * value is scale · q + m (q4_1, q5_1; q4_K, q5_K with m = −dmin · m), m · Σx as llama.cpp's q8_1
 * block sum does it.
 */
fn xq_sum(ub: u32) -> i32 {
  var s = 0i;
  for (var k = 0u; k < 8u; k++) {
    s += dot4I8Packed(xq[8u * ub + k], 0x01010101u);
  }
  return s;
}
