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

/* e^r for |r| <= ln2/2 by its Taylor polynomial to degree 13 (truncation < 4e-18),
 * grouped by Estrin's scheme as 1 + (r + r^2 Q(r)): a dependency chain of depth 6
 * instead of Horner's 14, so that the evaluations of neighbouring vector elements
 * overlap in the pipeline (in the activation loops latency, not arithmetic, bounds
 * Horner: 4.6 against 5.8 ns per softplus-and-sigmoid element on AVX2).  Error about
 * 0.8 ulp against Horner's 0.6; used by the sigmoid/softplus/tanh paths, sf_exp keeps
 * Horner. */
static inline double sf_expm1_poly(double r)   /* e^r - 1 = r + r^2 Q(r) */
{
    const double r2 = r * r, r4 = r2 * r2;
    const double p23 = 1.0 / 2.0 + r * (1.0 / 6.0), p45 = 1.0 / 24.0 + r * (1.0 / 120.0);
    const double p67 = 1.0 / 720.0 + r * (1.0 / 5040.0);
    const double p89 = 1.0 / 40320.0 + r * (1.0 / 362880.0);
    const double pab = 1.0 / 3628800.0 + r * (1.0 / 39916800.0);
    const double pcd = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);
    const double A = p23 + r2 * p45, B = p67 + r2 * p89, C = pab + r2 * pcd;
    return r + r2 * (A + r4 * (B + r4 * C));
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
 * exp(-|x|) shared by sigmoid and softplus.  Same reduction and polynomial. */
static inline double sf_exp_nonpos(double x)
{
    const double SHIFT = 6755399441055744.0;          /* 1.5 * 2^52 */
    const double xc = x < -746.0 ? -746.0 : x;
    const double n = (xc * 1.4426950408889634 + SHIFT) - SHIFT;
    const double r = (xc - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    const double e = sf_exp_poly(r);
    const double n1 = (n * 0.5 + SHIFT) - SHIFT;      /* two factors: subnormals right */
    return e * sf_pow2i(n1) * sf_pow2i(n - n1);
}

/* log(1 + e) for 0 <= e <= 1, given r = 1/(1 + e) (which sigmoid needs anyway, so the
 * compiler computes one division for both).  u = 1 + e lies in [1, 2], so u = 2^k m
 * needs no exponent extraction: k = 1 and m = u/2 when u > sqrt 2.  With f = m - 1 and
 * s = f/(2 + f), |s| <= 0.1716, log m = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R(s^2))),
 * R(z) = 2z/3 + 2z^2/5 + ... approximated by the degree-7 minimax polynomial of fdlibm's
 * e_log.c (Sun Microsystems, 1993: coefficients Lg1..Lg7, error below 2^-58.45), plus
 * (e - (u - 1))/u for the rounding of u.  Measured error <= 2 ulp
 * (tests/test_activations.py). */
static inline double sf_log1p_unit(double e, double r)
{
    const double u = 1.0 + e;
    const int hi = u > 1.4142135623730951;
    const double m = hi ? 0.5 * u : u;
    const double f = m - 1.0;                         /* exact */
    const double s = f / (2.0 + f);
    const double z = s * s;
    const double z2 = z * z, z4 = z2 * z2;            /* Estrin's scheme, as in sf_exp_poly */
    const double R = z * ((6.666666666666735130e-01 + z * 3.999999999940941908e-01)
                   + z2 * (2.857142874366239149e-01 + z * 2.222219843214978396e-01)
                   + z4 * ((1.818357216161805012e-01 + z * 1.531383769920937332e-01)
                           + z2 * 1.479819860511658591e-01));
    const double corr = (e - (u - 1.0)) * r;
    const double lo = (hi ? 1.90821492927058770002e-10 : 0.0) + corr;
    const double hfsq = 0.5 * f * f;                 /* log m = f - (hfsq - s (hfsq + R)) */
    return (lo + (f - (hfsq - s * (hfsq + R)))) + (hi ? 6.93147180369123816490e-01 : 0.0);
}

/* ---- numerically safe primitives ------------------------------------------------ */
static inline double sf_sigmoid(double x)
{
    /* 1/(1+exp(-x)) without overflow: with e = exp(-|x|) in (0, 1], 1/(1+e) for x >= 0
     * and e/(1+e) for x < 0; both keep full relative accuracy */
    const double e = sf_exp_nonpos(-fabs(x));
    const double r = 1.0 / (1.0 + e);
    return x >= 0.0 ? r : e * r;
}

static inline double sf_softplus(double x)
{
    /* log(1+exp(x)) = max(x,0) + log1p(exp(-|x|)); exp(-|x|) and 1/(1+exp(-|x|)) are the
     * same expressions as in sf_sigmoid, so inlined together they are computed once */
    const double e = sf_exp_nonpos(-fabs(x));
    const double r = 1.0 / (1.0 + e);
    return (x > 0.0 ? x : 0.0) + sf_log1p_unit(e, r);   /* NaN propagates through e */
}

static inline double sf_normal_cdf(double x)
{
    /* Phi(x) = erfc(-x/sqrt 2)/2: full relative accuracy in the left tail */
    return 0.5 * erfc(-x * M_SQRT1_2);
}

static inline double sf_sech(double x)
{
    /* 1/cosh(x) = 2 e/(1 + e^2) with e = exp(-|x|) in (0, 1]: no overflow, and the
     * limit 0 for |x| > 745 (measured error <= 2 ulp) */
    const double e = sf_exp_nonpos(-fabs(x));
    return 2.0 * e / (1.0 + e * e);
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
