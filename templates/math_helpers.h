/* ---- vectorizable elementary functions --------------------------------------------- *
 * Written without branches or calls so that loops over neurons vectorize (the public
 * kernels are compiled for AVX2+FMA and for the baseline ISA, selected at load time). */
static inline double sf_from_bits(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }
static inline uint64_t sf_bits(double d) { uint64_t u; memcpy(&u, &d, sizeof u); return u; }

/* 2^n for an integer-valued double n in [-1022, 1023]: the magic constant 1.5*2^52
 * puts n + 1023 in the low mantissa bits, a shift moves it into the exponent field. */
static inline double sf_pow2i(double n)
{
    return sf_from_bits(sf_bits(n + (1023.0 + 6755399441055744.0)) << 52);
}

/* exp(x), branch-free (vectorizes): x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, two-part
 * ln2), e^r by its Taylor polynomial to degree 13 (truncation < 4e-18), and 2^n applied
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

/* ---- numerically safe primitives ------------------------------------------------ */
static inline double sf_sigmoid(double x)
{
    /* 1/(1+exp(-x)) without overflow: with e = exp(-|x|) in (0, 1], 1/(1+e) for x >= 0
     * and e/(1+e) for x < 0; both keep full relative accuracy */
    const double e = sf_exp(-fabs(x));
    const double r = 1.0 / (1.0 + e);
    return x >= 0.0 ? r : e * r;
}

static inline double sf_softplus(double x)
{
    /* log(1+exp(x)) = max(x,0) + log1p(exp(-|x|)) */
    return (x > 0.0 ? x : 0.0) + sf_log1p(sf_exp(-fabs(x)));
}

static inline double sf_normal_cdf(double x)
{
    /* Phi(x) = erfc(-x/sqrt 2)/2: full relative accuracy in the left tail */
    return 0.5 * erfc(-x * M_SQRT1_2);
}

static inline double sf_sech(double x)
{
    /* 1/cosh(x): cosh overflows to inf for |x| > 710, giving the correct limit 0 */
    return 1.0 / cosh(x);
}

static inline double sf_sign(double x) { return (double)((x > 0.0) - (x < 0.0)); }
