//! Synthetic e4m3 bytes shared by the criterion benches and `examples/kernel_loop.rs`: Gaussian
//! or Laplace weights rounded to FP8 e4m3, deterministic for a seed.

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn laplace(&mut self) -> f64 {
        let u = self.uniform() - 0.5;
        -u.signum() * (1.0 - 2.0 * u.abs()).ln()
    }
}

/// Rounds `x` to FP8 e4m3 (bias 7, 3 mantissa bits, saturating at ±448), returning its byte.
fn to_e4m3(x: f64) -> u8 {
    let sign = if x < 0.0 { 0x80u8 } else { 0 };
    let a = x.abs().min(448.0);
    if a < 2f64.powi(-6) {
        // Subnormal: multiples of 2^-9.
        return sign | (a / 2f64.powi(-9)).round().min(7.0) as u8;
    }
    let e = a.log2().floor() as i32;
    let mut m = ((a / 2f64.powi(e) - 1.0) * 8.0).round() as i32;
    let mut e = e;
    if m == 8 {
        m = 0;
        e += 1;
    }
    let field = (e + 7).clamp(1, 15) as u8;
    sign | (field << 3) | (m as u8).min(if field == 15 { 6 } else { 7 })
}

/// e4m3 bytes of weight-like values (σ = 0.02, scaled per 4096-block like a per-tensor scale).
pub fn e4m3_data(n: usize, laplace: bool, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|_| {
            let v = if laplace { rng.laplace() } else { rng.gaussian() };
            to_e4m3(v * 0.02 * (448.0 / 0.02 / 8.0) / 16.0)
        })
        .collect()
}
