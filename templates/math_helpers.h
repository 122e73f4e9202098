/* ---- vectorizable elementary functions --------------------------------------------- *
 * Written without branches or calls so that loops over neurons vectorize (the public
 * kernels are compiled for AVX-512, for AVX2+FMA and for the baseline ISA, selected at
 * load time). */
static inline double sf_from_bits(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }
static inline uint64_t sf_bits(double d) { uint64_t u; memcpy(&u, &d, sizeof u); return u; }

/* 2^n for an integer-valued double n in [-1022, 1023]: the magic constant 1.5*2^52
 * puts n + 1023 in the low mantissa bits, a shift moves it into the exponent field. */
static inline double sf_pow2i(double n)
{
    return sf_from_bits(sf_bits(n + (1023.0 + 6755399441055744.0)) << 52);
}

/* e^r - 1 for |r| <= ln2/2 as r + r^2 Q(r), Q of degree 9: the Chebyshev interpolant
 * (mpmath's chebyfit at 50 digits) of Q(r) = (e^r - 1 - r)/r^2 on [-ln2/2, ln2/2].  With
 * the coefficients rounded to doubles, 1 + r + r^2 Q(r) is within 1.6e-17 relative of
 * e^r (0.07 ulp; checked at 50 digits on 2001 points): the degree-13 Taylor polynomial
 * used before (truncation < 4e-18) spent two more multiply-adds per element for
 * accuracy lost in the final rounding anyway.  The activation loops are bound by
 * multiply-add throughput, so Q is evaluated with the fewest multiply-adds that still
 * leave two independent chains: Q(r) = E(w) + r O(w) with w = r^2, E and O each by
 * Horner's rule (11 multiplies or multiply-adds for r + r^2 Q; Estrin's scheme took 12
 * and plain Horner, one chain of 11, stalls on latency).  With the same form in
 * sf_log1p_unit and the exponent change of sf_exp_nonpos, softplus with its derivative
 * went from 1.59-1.65 to 1.42-1.54 ns per element (python benchmarks/activation_rows.py,
 * the kernels' clones on AVX-512, three runs before and three after; AVX2+FMA build
 * 1.87 -> 1.68; the baseline build, without multiply-add, 5.28 -> 5.52, slower).  The
 * accuracy claim is checked in tests/test_activations.py. */
static const double sf_expm1_q[10] = {
    0.5000000000000001, 0.16666666666666669, 0.041666666666624164, 0.008333333333330065,
    0.0013888888917196719, 0.00019841269863040545, 2.4801521322368692e-05,
    2.7557268480310024e-06, 2.7620075879983367e-07, 2.5100375832561234e-08 };

static inline double sf_expm1_poly(double r)
{
    const double *q = sf_expm1_q, w = r * r;
    const double E = q[0] + w * (q[2] + w * (q[4] + w * (q[6] + w * q[8])));
    const double O = q[1] + w * (q[3] + w * (q[5] + w * (q[7] + w * q[9])));
    return r + w * (E + r * O);
}

static inline double sf_exp_poly(double r) { return 1.0 + sf_expm1_poly(r); }

/* exp(x), branch-free (vectorizes): x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, two-part
 * ln2), e^r by its Taylor polynomial to degree 13 in Horner form (truncation < 4e-18;
 * the final fused steps keep e^r within about half an ulp), and 2^n applied
 * as two factors so that subnormal results are right.  Overflow gives +inf, underflow 0,
 * NaN propagates.  Measured error <= 1 ulp (tests/test_activations.py). */
static inline double sf_exp(double x)
{
    const double SHIFT = 6755399441055744.0;          /* 1.5 * 2^52 */
    const double xc = x < -746.0 ? -746.0 : (x > 710.0 ? 710.0 : x);
    const double n = (xc * 1.4426950408889634 + SHIFT) - SHIFT;
    const double r = (xc - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    double e = 1.0 / 6227020800.0;                     /* 1/13! */
    e = e * r + 1.0 / 479001600.0;
    e = e * r + 1.0 / 39916800.0;
    e = e * r + 1.0 / 3628800.0;
    e = e * r + 1.0 / 362880.0;
    e = e * r + 1.0 / 40320.0;
    e = e * r + 1.0 / 5040.0;
    e = e * r + 1.0 / 720.0;
    e = e * r + 1.0 / 120.0;
    e = e * r + 1.0 / 24.0;
    e = e * r + 1.0 / 6.0;
    e = e * r + 0.5;
    e = e * r + 1.0;
    e = e * r + 1.0;
    const double n1 = (n * 0.5 + SHIFT) - SHIFT;
    const double y = e * sf_pow2i(n1) * sf_pow2i(n - n1);
    const double big = x > 709.782712893384 ? INFINITY : y;
    const double out = x < -745.1332191019412 ? 0.0 : big;
    return x != x ? x : out;
}

/* log(u) for normal u > 0: u = 2^k m with
 * m in [sqrt(1/2), sqrt 2), log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716, by the
 * odd series to s^25 (truncation < 1e-19 relative). */
static inline double sf_log_core(double u, double *kout)
{
    const uint64_t b = sf_bits(u);
    double k = sf_from_bits((b >> 52) + sf_bits(6755399441055744.0)) - (6755399441055744.0 + 1023.0);
    double m = sf_from_bits((b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    const int hi = m > 1.4142135623730951;
    m = hi ? 0.5 * m : m;
    k = hi ? k + 1.0 : k;
    const double f = m - 1.0;
    const double s = f / (2.0 + f);
    const double z = s * s;
    double t = 1.0 / 25.0;
    t = t * z + 1.0 / 23.0;
    t = t * z + 1.0 / 21.0;
    t = t * z + 1.0 / 19.0;
    t = t * z + 1.0 / 17.0;
    t = t * z + 1.0 / 15.0;
    t = t * z + 1.0 / 13.0;
    t = t * z + 1.0 / 11.0;
    t = t * z + 1.0 / 9.0;
    t = t * z + 1.0 / 7.0;
    t = t * z + 1.0 / 5.0;
    t = t * z + 1.0 / 3.0;
    *kout = k;
    /* 2 atanh(s) = f - f^2/2 + ... written as 2s + 2s z t: keep f's exactness */
    return 2.0 * s + 2.0 * s * z * t;
}

/* log1p(t) for t >= -1: log(u) with u = 1 + t rounded, plus the first-order correction
 * (t - (u - 1)) / u for the rounding of u (Goldberg's trick).  Measured error <= 2 ulp. */
static inline double sf_log1p(double t)
{
    const double u = 1.0 + t;
    double k;
    const double lm = sf_log_core(u > 0.0 && u < INFINITY ? u : 1.0, &k);
    const double corr = (t - (u - 1.0)) / u;
    double y = (k * 1.90821492927058770002e-10 + corr) + lm + k * 6.93147180369123816490e-01;
    y = fabs(t) < 1e-300 ? t : y;            /* exact for tiny t and for +-0 */
    y = u == INFINITY ? INFINITY : y;
    y = t == -1.0 ? -INFINITY : y;
    y = t < -1.0 ? NAN : y;
    return t != t ? t : y;
}

/* exp(x) for x <= 0 (or NaN): sf_exp without the overflow branch, for the
 * exp(-|x|) shared by sigmoid and softplus.  Same reduction, polynomial sf_expm1_poly.
 * 2^n is applied as 2^(n+64) (a normal number for x >= -746) times 2^-64, which rounds
 * once, also to a subnormal result.  The first factor is an integer addition to the
 * exponent field, exact since e^r * 2^(n+64) is normal: t = x log2(e) + 1.5 * 2^52 holds
 * n in its low mantissa bits, so bits(t) << 52 is n << 52 modulo 2^64.  That takes a
 * multiplication off the multiply-add pipes (and gives the product's exact value). */
static inline double sf_exp_nonpos(double x)
{
    const double SHIFT = 6755399441055744.0;          /* 1.5 * 2^52 */
    const double xc = x < -746.0 ? -746.0 : x;
    const double t = xc * 1.4426950408889634 + SHIFT;
    const double n = t - SHIFT;
    const double r = (xc - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    const double e = sf_exp_poly(r);
    /* the integer addition does not keep a NaN: xc - xc (0, or NaN) puts it back, with
     * one addition (a select cost twice as much); -inf was clamped to -746 */
    return sf_from_bits(sf_bits(e) + ((sf_bits(t) + 64) << 52)) * 0x1p-64 + (xc - xc);
}

/* log(1 + e) for 0 <= e <= 1 (or NaN), given b = 2 + e.  With s = e/(2 + e) in [0, 1/3],
 * log(1 + e) = 2 atanh(s) = 2s + s R(s^2), where R(z) = 2z/3 + 2z^2/5 + 2z^3/7 + ... is z
 * times a degree-9 polynomial T, the minimax fit of relative error 1.24e-16 on [0, 1/9]
 * (Remez, mpmath at 50 digits; 1.93e-16 with the coefficients rounded to doubles).  The
 * result moves by s R times that, < 0.05 ulp of log(1 + e) (both checked in
 * tests/test_activations.py).  Since 2s = e - e s, the sum is e - s (e - R): e enters
 * exactly and s only in the correction s (e - R), at most 0.31 of the result (at
 * e = 1).  This is fdlibm's arrangement (e_log.c, Sun Microsystems 1993:
 * e - (e^2/2 - s (e^2/2 + R))) with e^2/2 - s e^2/2 = e s folded in, two multiplies
 * fewer.  T = E(z^2) + z O(z^2), each by Horner's rule (see sf_expm1_poly).  No
 * exponent split, no rounding correction: e is exact.  Softplus built on it is checked
 * to <= 3 ulp in tests/test_activations.py (the largest error seen on 4 million random
 * points: 1.76 ulp with multiply-add, 2.03 ulp without). */
static const double sf_log1p_t[10] = {
    6.666666666666666e-01, 4.000000000001482e-01, 2.8571428567052576e-01,
    2.2222222722643065e-01, 1.8181789193817186e-01, 1.538557638567017e-01,
    1.3314047405378374e-01, 1.2001936563872799e-01, 8.796583657241128e-02,
    1.617237086083202e-01 };

static inline double sf_log1p_unit(double e, double b)
{
    const double *c = sf_log1p_t, s = e / b, z = s * s, w = z * z;
    const double E = c[0] + w * (c[2] + w * (c[4] + w * (c[6] + w * c[8])));
    const double O = c[1] + w * (c[3] + w * (c[5] + w * (c[7] + w * c[9])));
    return e - s * (e - z * (E + z * O));
}

/* ---- numerically safe primitives ------------------------------------------------ */
/* The logistic, softplus and sech helpers all start from e = exp(-|x|).  The _e forms
 * take that e (it must be sf_exp_nonpos(-fabs(x)), bit for bit) so that the activation
 * loops can compute it for a whole row of samples first and the rest in a second loop:
 * two shorter dependency chains per element, which the out-of-order core overlaps
 * across more elements (softplus with its derivative: 2.4 against 3.3 ns per element on
 * AVX2; python benchmarks/activation_rows.py).  The results are the same bits. */
static inline double sf_sigmoid_e(double x, double e)
{
    /* 1/(1+exp(-x)) without overflow: 1/(1+e) for x >= 0 and e/(1+e) for x < 0; both
     * keep full relative accuracy */
    const double r = 1.0 / (1.0 + e);
    return x >= 0.0 ? r : e * r;
}

static inline double sf_softplus_e(double x, double e)
{
    /* log(1+exp(x)) = max(x,0) + log1p(exp(-|x|)); NaN propagates through e */
    return (x > 0.0 ? x : 0.0) + sf_log1p_unit(e, 2.0 + e);
}

static inline double sf_sech_e(double x, double e)
{
    /* 1/cosh(x) = 2 e/(1 + e^2): no overflow, and the limit 0 for |x| > 745 (measured
     * error <= 2 ulp) */
    (void)x;
    return 2.0 * e / (1.0 + e * e);
}

static inline double sf_sigmoid(double x) { return sf_sigmoid_e(x, sf_exp_nonpos(-fabs(x))); }
static inline double sf_softplus(double x) { return sf_softplus_e(x, sf_exp_nonpos(-fabs(x))); }
static inline double sf_sech(double x) { return sf_sech_e(x, sf_exp_nonpos(-fabs(x))); }

static inline double sf_normal_cdf(double x)
{
    /* Phi(x) = erfc(-x/sqrt 2)/2: full relative accuracy in the left tail */
    return 0.5 * erfc(-x * M_SQRT1_2);
}

/* expm1(y) for y <= 0 (or NaN): y = n ln2 + r as in sf_exp, e^r - 1 = r + r^2 Q(r) from
 * sf_expm1_poly, and expm1(y) = 2^n (e^r - 1) + (2^n - 1), both parts exact but
 * the last addition.  Below y = -40 the result is -1 to double precision. */
static inline double sf_expm1_nonpos(double y)
{
    const double SHIFT = 6755399441055744.0;          /* 1.5 * 2^52 */
    const double yc = y < -40.0 ? -40.0 : y;
    const double n = (yc * 1.4426950408889634 + SHIFT) - SHIFT;
    const double r = (yc - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    const double em1 = sf_expm1_poly(r);
    const double t = sf_pow2i(n);                     /* n in [-58, 0]: exact */
    return t * em1 + (t - 1.0);
}

/* tanh(x) = -m/(2 + m) with m = expm1(-2|x|) in (-1, 0], sign of x: branch-free (it
 * vectorizes), no overflow, no cancellation near 0, +-0 and NaN kept.  Measured error
 * <= 3 ulp (tests/test_activations.py). */
static inline double sf_tanh(double x)
{
    const double m = sf_expm1_nonpos(-2.0 * fabs(x));
    return copysign(-m / (2.0 + m), x);
}

static inline double sf_sign(double x) { return (double)((x > 0.0) - (x < 0.0)); }
