/*
 * gaussian_math.h -- standard normal and bivariate normal distribution functions.
 *
 * Part of symflow; textually included into generated C (C99, only <math.h>, every
 * function static, internal helpers prefixed sf_gm_, no globals except static const
 * tables).  Compiled with -O3 -fno-math-errno -fno-trapping-math (no fast-math: the
 * double-double steps below rely on IEEE round-to-nearest and on fma()).
 *
 *   double sf_phi(double x)                        standard normal density
 *   double sf_Phi(double x)                        standard normal CDF
 *   double sf_Phi_ratio(double p, double q)        Phi(p/q) for q >= 0; q == 0 gives
 *                                                  1, 1/2, 0 for p > 0, p == 0, p < 0
 *   double sf_bvn(double a, double b, double rho)  P(X <= a, Y <= b), (X, Y) standard
 *                                                  bivariate normal, corr(X, Y) = rho
 *   double sf_bvn_upper(double a, double b, double rho)   P(X > a, Y > b)
 *
 * Accuracy goal: absolute error of a few 1e-17 and relative error ~1e-15 for every
 * value down to the normal range (sf_bvn: relative <= 1e-13 for values >= 1e-250), in
 * both tails, for rho anywhere in [-1, 1] including 1 - |rho| = 2^-53 and rho ~ 0.
 *
 * Phi.  Phi(x) = erfc(-x/sqrt 2)/2.  The rounding of x/sqrt(2) alone would cost a
 * relative error ~x^2 eps in the far tail (1e-13 at x = -37), so the exact residual
 * du of the argument is carried (fma) and applied to first order,
 * erfc(u + du) = erfc(u) - du (2/sqrt pi) exp(-u^2), with exp(-u^2)/erfc(u) taken from
 * the bracket 2/(sqrt(pi) erfcx(u)) ~ u + sqrt(u^2 + c(u)) (Abramowitz & Stegun 7.1.13),
 * which is ample for a correction term.
 *
 * Bivariate normal, fast path.  For |rho| <= 0.95 and |a|, |b| <= 8 the Drezner &
 * Wesolowsky (1990, J. Statist. Comput. Simul. 35, 101-107) / Genz (2004, "Numerical
 * computation of rectangular bivariate and trivariate normal and t probabilities",
 * Statistics and Computing 14, 251-260, eq. (3)) angle integral is tried first (see
 * sf_gm_bvn_dw); it is kept unless its result comes from a cancellation or lies in a
 * far tail, where the general method below takes over.
 *
 * Bivariate normal, general method.  With s = sqrt(1 - rho^2) and z(x) = (k - rho x)/s,
 * the conditioning formula (Genz 2004, eq. (2): dPhi2/dh = phi(h) Phi((k - rho h)/s))
 *
 *     Phi2(h, k; rho) = int_{-inf}^{h} phi(x) Phi(z(x)) dx                        (1)
 *
 * is split at x_c = k/rho, where z changes sign: on the side where z >= 0,
 * Phi(z) = 1 - Phic(z) with Phic(z) <= 1/2, on the other side Phi(z) = Phic(-z) <= 1/2.
 * Hence Phi2 is a sum of
 *     Phi(x_c) or Phi(h),  an interval probability P(x_c < X <= h),  and
 *     M(x0, x1; sigma) = int_{x0}^{x1} phi(x) Phic(sigma z(x)) dx,  sigma z >= 0,
 * in which every subtracted M is at most half of the term it is subtracted from, so no
 * step cancels catastrophically and each result is relatively accurate in both tails;
 * values near 1 are kept as 1 + (sum of small terms), summed in double-double and
 * rounded once.  The integration variable is the one with the smaller |threshold|
 * (M <= s exp(-k^2/2)/2 then stays small), which also makes sf_bvn exactly symmetric.
 *
 * M is evaluated with the Mills ratio R(w) = Phic(w)/phi(w) (smooth, entire, R ~ 1/w)
 * and the exact identity x^2 + z^2 = y^2 + k^2, y = (x - rho k)/s, z = ks - rho y
 * (completing the square), which turns M into a Gaussian integral
 *
 *     M = s/(2 pi) exp(-k^2/2) int_{y0}^{y1} exp(-y^2/2) R(sigma (k s - rho y)) dy.   (2)
 *
 * The part of (2) in |y| <= 4 is done by Gauss-Legendre (12 to 24 nodes by length).
 * Tails |y| >= Y0 >= 4 are written y = Y0 + u, exp(-y^2/2) = exp(-Y0^2/2)
 * exp(-Y0 u - u^2/2) and u = t/Y0, i.e. Gauss-Laguerre (20 nodes) in t with the smooth
 * factor exp(-t^2/(2 Y0^2)) R(.); a finite tail whose Gaussian drop (y1^2 - y0^2)/2 is
 * below 40 is done by Gauss-Legendre panels graded at drops 2, 6, 14, 26.  The end
 * points y0, y1 and the large exponent (k^2 + y0^2)/2 of a tail are formed in
 * double-double (Dekker 1971), so that values near 1e-250 keep ~1e-15 relative
 * accuracy.  The nodes are positive, the sums have no cancellation.
 *
 * Exact limits: rho = 1 -> Phi(min(a, b)); rho = -1 -> P(-b < X <= a) (an interval
 * probability, computed from the smaller tail or by quadrature when it is short);
 * rho = 0 -> Phi(a) Phi(b).  |rho| > 1 is clamped to +-1 (rounding of a correlation);
 * NaN in, NaN out.  Arguments beyond +-40 are treated as +-inf (Phi(-40) < 1e-348).
 *
 * Quadrature nodes and weights (Gauss-Legendre 12/16/20/24/32 on [-1, 1], Gauss-Laguerre
 * 20) were computed with mpmath at 50 digits and rounded to double.
 */
#include <math.h>

static const double sf_gm_rs2_hi = 0x1.6a09e667f3bcdp-1;    /* 1/sqrt(2), high part */
static const double sf_gm_rs2_lo = -0x1.bdd3413b26456p-55;  /* 1/sqrt(2) - high part */
static const double sf_gm_sqrt_pi_2 = 0x1.40d931ff62706p+0; /* sqrt(pi/2) */
static const double sf_gm_inv_sqrt_2pi = 0x1.9884533d43651p-2; /* 1/sqrt(2 pi) */
static const double sf_gm_inv_2pi = 0x1.45f306dc9c883p-3;   /* 1/(2 pi) */
static const double sf_gm_exp_m8 = 0x1.5fc21041027adp-12;   /* exp(-8) = exp(-T^2/2), T = 4 */
static const double sf_gm_4_pi = 0x1.45f306dc9c883p+0;      /* 4/pi */


/* ---- quadrature rules --------------------------------------------------------------
 * Gauss-Legendre on [-1, 1]: positive nodes x and weights w (the rule is symmetric).
 * Gauss-Laguerre (weight exp(-t) on [0, inf)): nodes t, weights w, and -log(w). */
static const double sf_gm_gl12_x[6] = {
    9.81560634246719244e-01, 9.04117256370474909e-01, 7.69902674194304693e-01,
    5.87317954286617483e-01, 3.67831498998180184e-01, 1.25233408511468913e-01
};
static const double sf_gm_gl12_w[6] = {
    4.71753363865118278e-02, 1.06939325995318427e-01, 1.60078328543346221e-01,
    2.03167426723065925e-01, 2.33492536538354806e-01, 2.49147045813402773e-01
};
static const double sf_gm_gl16_x[8] = {
    9.89400934991649939e-01, 9.44575023073232600e-01, 8.65631202387831755e-01,
    7.55404408355002999e-01, 6.17876244402643771e-01, 4.58016777657227370e-01,
    2.81603550779258915e-01, 9.50125098376374405e-02
};
static const double sf_gm_gl16_w[8] = {
    2.71524594117540964e-02, 6.22535239386478936e-02, 9.51585116824927857e-02,
    1.24628971255533877e-01, 1.49595988816576736e-01, 1.69156519395002536e-01,
    1.82603415044923584e-01, 1.89450610455068502e-01
};
static const double sf_gm_gl20_x[10] = {
    9.93128599185094885e-01, 9.63971927277913809e-01, 9.12234428251325946e-01,
    8.39116971822218782e-01, 7.46331906460150796e-01, 6.36053680726515025e-01,
    5.10867001950827126e-01, 3.73706088715419549e-01, 2.27785851141645068e-01,
    7.65265211334973383e-02
};
static const double sf_gm_gl20_w[10] = {
    1.76140071391521179e-02, 4.06014298003869387e-02, 6.26720483341090678e-02,
    8.32767415767047547e-02, 1.01930119817240442e-01, 1.18194531961518412e-01,
    1.31688638449176637e-01, 1.42096109318382041e-01, 1.49172986472603741e-01,
    1.52753387130725837e-01
};
static const double sf_gm_gl32_x[16] = {
    9.97263861849481570e-01, 9.85611511545268382e-01, 9.64762255587506390e-01,
    9.34906075937739667e-01, 8.96321155766052091e-01, 8.49367613732569970e-01,
    7.94483795967942386e-01, 7.32182118740289711e-01, 6.63044266930215231e-01,
    5.87715757240762304e-01, 5.06899908932229359e-01, 4.21351276130635333e-01,
    3.31868602282127667e-01, 2.39287362252137065e-01, 1.44471961582796488e-01,
    4.83076656877383173e-02
};
static const double sf_gm_gl32_w[16] = {
    7.01861000947009636e-03, 1.62743947309056704e-02, 2.53920653092620588e-02,
    3.42738629130214315e-02, 4.28358980222266830e-02, 5.09980592623761747e-02,
    5.86840934785355442e-02, 6.58222227763618495e-02, 7.23457941088485046e-02,
    7.81938957870703111e-02, 8.33119242269467486e-02, 8.76520930044038110e-02,
    9.11738786957638908e-02, 9.38443990808045664e-02, 9.56387200792748610e-02,
    9.65400885147277982e-02
};
static const double sf_gm_gl24_x[12] = {
    9.95187219997021311e-01, 9.74728555971309474e-01, 9.38274552002732798e-01,
    8.86415527004401071e-01, 8.20001985973902947e-01, 7.40124191578554358e-01,
    6.48093651936975546e-01, 5.45421471388839563e-01, 4.33793507626045127e-01,
    3.15042679696163397e-01, 1.91118867473616311e-01, 6.40568928626056300e-02
};
static const double sf_gm_gl24_w[12] = {
    1.23412297999872002e-02, 2.85313886289336634e-02, 4.42774388174198077e-02,
    5.92985849154367833e-02, 7.33464814110802998e-02, 8.61901615319532743e-02,
    9.76186521041138844e-02, 1.07444270115965634e-01, 1.15505668053725599e-01,
    1.21670472927803391e-01, 1.25837456346828303e-01, 1.27938195346752159e-01
};
static const double sf_gm_lag20_t[20] = {
    7.05398896919887525e-02, 3.72126818001611459e-01, 9.16582102483273542e-01,
    1.70730653102834395e+00, 2.74919925530943221e+00, 4.04892531385088716e+00,
    5.61517497086161654e+00, 7.45901745367106361e+00, 9.59439286958109605e+00,
    1.20388025469643161e+01, 1.48142934426307402e+01, 1.79488955205193754e+01,
    2.14787882402850094e+01, 2.54517027931869038e+01, 2.99325546317006115e+01,
    3.50134342404790004e+01, 4.08330570567285704e+01, 4.76199940473465020e+01,
    5.58107957500638960e+01, 6.65244165256157487e+01
};
static const double sf_gm_lag20_w[20] = {
    1.68746801851113876e-01, 2.91254362006068301e-01, 2.66686102867001285e-01,
    1.66002453269506828e-01, 7.48260646687923664e-02, 2.49644173092832197e-02,
    6.20255084457223705e-03, 1.14496238647690822e-03, 1.55741773027811967e-04,
    1.54014408652249151e-05, 1.08648636651798244e-06, 5.33012090955671465e-08,
    1.75798117905058199e-09, 3.72550240251232063e-11, 4.76752925157819069e-13,
    3.37284424336243857e-15, 1.15501433950039888e-17, 1.53952214058234354e-20,
    5.28644272556915808e-24, 1.65645661249902331e-28
};
static const double sf_gm_lag20_nlw[20] = {
    1.78, 1.23, 1.32, 1.80, 2.59, 3.69, 5.08, 6.77, 8.77, 11.08,
    13.73, 16.75, 20.16, 24.01, 28.37, 33.32, 39.00, 45.62, 53.60, 63.97
};

/* ---- double-double arithmetic (Knuth two-sum, Dekker product via fma) ------------- */
static inline void sf_gm_two_sum(double a, double b, double *s, double *e)
{
    double t = a + b, bb = t - a;
    *e = (a - (t - bb)) + (b - bb);
    *s = t;
}

static inline void sf_gm_fast_two_sum(double a, double b, double *s, double *e)
{
    double t = a + b; /* requires |a| >= |b| */
    *e = b - (t - a);
    *s = t;
}

static inline void sf_gm_dd_mul(double ah, double al, double bh, double bl,
                                double *rh, double *rl)
{
    double p = ah * bh;
    double e = fma(ah, bh, -p) + (ah * bl + al * bh);
    sf_gm_fast_two_sum(p, e, rh, rl);
}

static inline void sf_gm_dd_div(double ah, double al, double bh, double bl,
                                double *rh, double *rl)
{
    double q1 = ah / bh;
    double p = q1 * bh, pe = fma(q1, bh, -p);
    double r = (((ah - p) - pe) + al) - q1 * bl;
    sf_gm_fast_two_sum(q1, r / bh, rh, rl);
}

static inline void sf_gm_dd_add(double ah, double al, double bh, double bl,
                                double *rh, double *rl)
{
    double s, e;
    sf_gm_two_sum(ah, bh, &s, &e);
    e += al + bl;
    sf_gm_fast_two_sum(s, e, rh, rl);
}

/* exp(-x^2/2) with x^2 split exactly (|x| <= 40) */
static inline double sf_gm_exp_mhalf_sq(double x)
{
    double p = x * x, e = fma(x, x, -p);
    return exp(-0.5 * p) * (1.0 - 0.5 * e);
}

/* ---- univariate normal -------------------------------------------------------------- */

/* Phic(x + dx) = P(X > x + dx) = erfc((x + dx)/sqrt 2)/2, relative accuracy a few ulp
 * (|dx| <= ulp(x)); see the header comment for the argument-rounding correction. */
static double sf_gm_mills(double w);

static double sf_gm_Phic2(double x, double dx)
{
    if (!(x > -40.0)) return x != x ? x : 1.0;
    if (x > 40.0) return 0.0;
    if (x >= 30.0) /* phi(x) (R(x) - dx): glibc's erfc loses a few bits near underflow */
        return sf_gm_inv_sqrt_2pi * sf_gm_exp_mhalf_sq(x) * (sf_gm_mills(x) - dx);
    double u = x * sf_gm_rs2_hi;
    double du = fma(x, sf_gm_rs2_hi, -u) + x * sf_gm_rs2_lo + dx * sf_gm_rs2_hi;
    if (fabs(u) < 0.5) { /* 1/2 - erf(u)/2: erf is the more accurate one here */
        double Er = erf(u), uu = u * u;
        double c = 2.0 - (2.0 - sf_gm_4_pi) / (1.0 + uu);
        return 0.5 - 0.5 * (Er + du * (1.0 - fabs(Er)) * (fabs(u) + sqrt(uu + c)));
    }
    double E = erfc(u);
    double g = u >= 0.0 ? E : 2.0 - E; /* erfc(|u|) */
    double uu = u * u;
    double c = 2.0 - (2.0 - sf_gm_4_pi) / (1.0 + uu);
    return 0.5 * (E - du * g * (fabs(u) + sqrt(uu + c)));
}

static inline double sf_gm_Phic(double x) { return sf_gm_Phic2(x, 0.0); }

/* standard normal density */
static double sf_phi(double x)
{
    if (!(fabs(x) < 40.0)) return x != x ? x : 0.0;
    return sf_gm_inv_sqrt_2pi * sf_gm_exp_mhalf_sq(x);
}

/* standard normal CDF, relative accuracy ~1e-16 in both tails, Phi(+-inf) = 1, 0 */
static double sf_Phi(double x) { return sf_gm_Phic2(-x, 0.0); }

/* Phi(p/q) for a standard deviation q >= 0 (q == 0: 1, 1/2, 0 for p > 0, = 0, < 0);
 * the rounding residual of p/q is carried into the tail evaluation. */
static double sf_Phi_ratio(double p, double q)
{
    if (p != p || q != q) return p + q;
    if (q == 0.0) return p > 0.0 ? 1.0 : (p < 0.0 ? 0.0 : 0.5);
    double x = p / q;
    if (!(fabs(x) <= 40.0) || !(fabs(q) < INFINITY)) return sf_Phi(x);
    double dx = fma(-x, q, p) / q;
    return sf_gm_Phic2(-x, -dx);
}

/* Phi(x) as base + small, base in {0, 1}, |small| <= 1/2 */
static inline void sf_gm_Phi_bs(double x, double *base, double *small)
{
    if (x > 0.675) { *base = 1.0; *small = -sf_gm_Phic(x); } /* Phi(x) > 3/4 */
    else { *base = 0.0; *small = sf_gm_Phic(-x); }
}

/* int_a^b phi(x) dx by 16-point Gauss-Legendre for a short interval with a >= 0 or
 * a < 0 < b; phi is factored at the end point nearest to 0. */
static double sf_gm_interval_gl(double a, double b)
{
    double r = a > 0.0 ? a : 0.0;
    double hl = 0.5 * (b - a), c = 0.5 * (a + b), S = 0.0;
    for (int j = 0; j < 8; j++) {
        double x = sf_gm_gl16_x[j];
        double d1, d2; /* offsets of the nodes c - x hl, c + x hl from r */
        if (r > 0.0) { d1 = hl * (1.0 - x); d2 = hl * (1.0 + x); }
        else { d1 = c - x * hl; d2 = c + x * hl; }
        S += sf_gm_gl16_w[j] * (exp(-0.5 * d1 * (2.0 * r + d1)) + exp(-0.5 * d2 * (2.0 * r + d2)));
    }
    return hl * S * sf_phi(r);
}

/* P(a < X <= b) as base + small without avoidable cancellation */
static void sf_gm_interval_bs(double a, double b, double *base, double *small)
{
    *base = 0.0;
    *small = 0.0;
    if (!(a < b)) return;
    if (b <= 0.0) { double t = a; a = -b; b = -t; } /* P(a < X <= b) = P(-b <= X < -a) */
    if (a >= 0.0) {
        double pa = sf_gm_Phic(a), pb = sf_gm_Phic(b);
        *small = pb <= 0.5 * pa ? pa - pb : sf_gm_interval_gl(a, b);
        return;
    }
    double c = sf_gm_Phic(-a) + sf_gm_Phic(b); /* a < 0 < b */
    if (c <= 0.25) { *base = 1.0; *small = -c; }
    else if (c <= 0.75) *small = 1.0 - c;       /* the interval is longer than 0.63 */
    else *small = sf_gm_interval_gl(a, b);
}

/* ---- Mills ratio R(w) = Phic(w)/phi(w) for w >= 30 ----------------------------------- */
static double sf_gm_mills(double w)
{
    /* asymptotic series, Abramowitz & Stegun 26.2.12, truncated after t^9: error < 1e-19 */
    double t = 1.0 / (w * w);
    double s = 1.0 - t * (1.0 - t * (3.0 - t * (15.0 - t * (105.0 - t * (945.0
               - t * (10395.0 - t * (135135.0 - t * (2027025.0 - t * 34459425.0))))))));
    return s / w;
}

/* exp(-(E + El)) R(w), |El| <= ulp(E), w > -1: for w < 30 one exp serves both factors,
 * R(w) exp(-E) = sqrt(pi/2) erfc(u) exp(w^2/2 - E) (1 - du 2/(sqrt(pi) erfcx(u))) with
 * w/sqrt(2) = u + du and w^2 split exactly, as in sf_gm_Phic2 */
static inline double sf_gm_node(double E, double El, double w)
{
    if (w >= 30.0) return sf_gm_mills(w) * (exp(-E) * (1.0 - El));
    double u = w * sf_gm_rs2_hi;
    double du = fma(w, sf_gm_rs2_hi, -u) + w * sf_gm_rs2_lo;
    double p = w * w, pe = fma(w, w, -p), xh, xl;
    sf_gm_two_sum(0.5 * p, -E, &xh, &xl);
    xl += 0.5 * pe - El;
    double uu = u * u, c = 2.0 - (2.0 - sf_gm_4_pi) / (1.0 + uu);
    return sf_gm_sqrt_pi_2 * erfc(u) * (exp(xh) * (1.0 + xl))
           * (1.0 - du * (fabs(u) + sqrt(uu + c)));
}

/* exp(-y^2/2) R(w) */
static inline double sf_gm_gauss_node(double y, double w)
{
    double p = y * y;
    return sf_gm_node(0.5 * p, 0.5 * fma(y, y, -p), w);
}

/* ---- the pieces M of the bivariate normal --------------------------------------------- */
typedef struct {
    double k, rho, ks;
    double s_hi, s_lo;   /* s = sqrt(1 - rho^2) */
    double d_hi, d_lo;   /* 1 - rho^2 */
    double mu_hi, mu_lo; /* rho k */
    double k2_hi, k2_lo; /* k^2 */
    double pre_hi, pre_lo; /* s exp(-k^2/2) / (2 pi) */
} sf_gm_ctx;

static const double sf_gm_inv_2pi_lo = -0x1.6b01ec5417056p-57; /* 1/(2 pi) - sf_gm_inv_2pi */

/* s/(2 pi) exp(-E/2), E = eh + el, as a double-double */
static void sf_gm_prefactor(const sf_gm_ctx *c, double eh, double el, double *ph, double *pl)
{
    double e = exp(-0.5 * eh), elo = -0.5 * el * e;   /* exp(-E/2) = e + elo */
    double p = c->s_hi * sf_gm_inv_2pi;
    double pe = fma(c->s_hi, sf_gm_inv_2pi, -p)
                + (c->s_lo * sf_gm_inv_2pi + c->s_hi * sf_gm_inv_2pi_lo);
    double q = p * e;
    *pl = fma(p, e, -q) + (pe * e + p * elo);
    *ph = q;
}

static void sf_gm_ctx_init(sf_gm_ctx *c, double k, double rho)
{
    double r2 = rho * rho, r2e = fma(rho, rho, -r2), d, de;
    sf_gm_two_sum(1.0, -r2, &d, &de);
    sf_gm_fast_two_sum(d, de - r2e, &c->d_hi, &c->d_lo);
    double s = sqrt(c->d_hi);
    c->s_hi = s;
    c->s_lo = (fma(-s, s, c->d_hi) + c->d_lo) / (2.0 * s);
    c->k = k;
    c->rho = rho;
    c->ks = k * s;
    c->mu_hi = rho * k;
    c->mu_lo = fma(rho, k, -c->mu_hi);
    c->k2_hi = k * k;
    c->k2_lo = fma(k, k, -c->k2_hi);
    sf_gm_prefactor(c, c->k2_hi, c->k2_lo, &c->pre_hi, &c->pre_lo);
}

/* y = (x - rho k)/s as a double-double (+-inf at an infinite x) */
static void sf_gm_y_of_x(const sf_gm_ctx *c, double x, double *yh, double *yl)
{
    if (!(fabs(x) < INFINITY)) { *yh = x; *yl = 0.0; return; }
    double nh, nl, t;
    sf_gm_two_sum(x, -c->mu_hi, &nh, &nl);
    sf_gm_two_sum(nh, nl - c->mu_lo, &nh, &t);
    sf_gm_dd_div(nh, t, c->s_hi, c->s_lo, yh, yl);
}

/* w = sigma (k - rho x)/s, +inf at an infinite end (where it is positive) */
static inline double sf_gm_w_of_x(const sf_gm_ctx *c, double x, double sigma)
{
    if (!(fabs(x) < INFINITY)) return INFINITY;
    double t = c->rho * x, te = fma(c->rho, x, -t);
    return sigma * (((c->k - t) - te) / c->s_hi);
}

/* s/(2 pi) exp(-(k^2 + y^2)/2) at the tail end x (y = y(x)), exponent in double-double */
static void sf_gm_tail_prefactor(const sf_gm_ctx *c, double x, double *ph, double *pl)
{
    double nh, nl, t, n2h, n2l, y2h, y2l, eh, el;
    sf_gm_two_sum(x, -c->mu_hi, &nh, &nl);
    sf_gm_two_sum(nh, nl - c->mu_lo, &nh, &t);
    sf_gm_dd_mul(nh, t, nh, t, &n2h, &n2l);
    sf_gm_dd_div(n2h, n2l, c->d_hi, c->d_lo, &y2h, &y2l);
    sf_gm_dd_add(c->k2_hi, c->k2_lo, y2h, y2l, &eh, &el);
    sf_gm_prefactor(c, eh, el, ph, pl);
}

/* Gauss-Legendre (n = 12, 16, 24) of exp(-Y0 u - u^2/2) R(w0 + bp u) on [ua, ub] */
static double sf_gm_tail_gl(double Y0, double ua, double ub, double w0, double bp, int n)
{
    const double *X = n == 12 ? sf_gm_gl12_x : sf_gm_gl16_x;
    const double *W = n == 12 ? sf_gm_gl12_w : sf_gm_gl16_w;
    double hl = 0.5 * (ub - ua), c = 0.5 * (ua + ub), S = 0.0;
    for (int j = 0; j < n / 2; j++) {
        double u1 = c - X[j] * hl, u2 = c + X[j] * hl;
        S += W[j] * (sf_gm_node(u1 * (Y0 + 0.5 * u1), 0.0, w0 + bp * u1)
                     + sf_gm_node(u2 * (Y0 + 0.5 * u2), 0.0, w0 + bp * u2));
    }
    return hl * S;
}

/* S = int_0^U exp(-Y0 u - u^2/2) R(w0 + bp u) du, Y0 >= 4, so that the tail piece
 * int_{Y0}^{Y0+U} exp(-y^2/2) R(.) dy equals exp(-Y0^2/2) S.  w0 + bp u >= 0 on [0, U]. */
static double sf_gm_tail(double Y0, double U, double w0, double bp)
{
    if (!(U > 0.0)) return 0.0;
    double drop = U * (Y0 + 0.5 * U); /* (y1^2 - y0^2)/2 */
    if (drop > 40.0) {                /* Gauss-Laguerre in t = Y0 u; nodes past U dropped */
        double S = 0.0, inv = 1.0 / Y0;
        for (int i = 0; i < 20; i++) {
            double u = sf_gm_lag20_t[i] * inv, q = 0.5 * u * u;
            if (u > U || (i > 0 && q + sf_gm_lag20_nlw[i] > 46.0)) break;
            S += sf_gm_lag20_w[i] * sf_gm_node(q, 0.0, w0 + bp * u);
        }
        return S * inv;
    }
    if (drop <= 2.0) return sf_gm_tail_gl(Y0, 0.0, U, w0, bp, 16);
    static const double D[5] = { 0.0, 2.0, 6.0, 14.0, 26.0 };
    double S = 0.0, ua = 0.0;
    for (int j = 1; j <= 5; j++) { /* panels graded at Gaussian drops 2, 6, 14, 26 */
        int last = j == 5 || D[j] >= drop;
        double ub = last ? U : 2.0 * D[j] / (sqrt(Y0 * Y0 + 2.0 * D[j]) + Y0);
        S += sf_gm_tail_gl(Y0, ua, ub, w0, bp, 12);
        if (last) break;
        ua = ub;
    }
    return S;
}

/* int_a^b exp(-y^2/2) R(w(y)) dy on [a, b] in [-4, 4], w linear with slope beta and
 * values wa, wb at the ends; w is evaluated from its smaller end (no cancellation) */
static double sf_gm_bulk(double a, double b, double wa, double wb, double beta)
{
    double L = b - a;
    if (!(L > 0.0)) return 0.0;
    const double *X, *W;
    int n;
    if (L <= 2.0) { X = sf_gm_gl12_x; W = sf_gm_gl12_w; n = 12; }
    else if (L <= 4.0) { X = sf_gm_gl16_x; W = sf_gm_gl16_w; n = 16; }
    else if (L <= 6.0) { X = sf_gm_gl20_x; W = sf_gm_gl20_w; n = 20; }
    else { X = sf_gm_gl24_x; W = sf_gm_gl24_w; n = 24; }
    double hl = 0.5 * L, c = 0.5 * (a + b), S = 0.0;
    for (int j = 0; j < n / 2; j++) {
        double x = X[j], y1 = c - x * hl, y2 = c + x * hl, w1, w2;
        if (beta >= 0.0) { w1 = wa + beta * (hl * (1.0 - x)); w2 = wa + beta * (hl * (1.0 + x)); }
        else { w1 = wb - beta * (hl * (1.0 + x)); w2 = wb - beta * (hl * (1.0 - x)); }
        S += W[j] * (sf_gm_gauss_node(y1, w1) + sf_gm_gauss_node(y2, w2));
    }
    return hl * S;
}

/* M(x0, x1; sigma) = int_{x0}^{x1} phi(x) Phic(sigma (k - rho x)/s) dx, the argument of
 * Phic being >= 0 on the interval; evaluated as (2) of the header comment.  The ends
 * y(x0), y(x1) are carried in double-double (a rounded end would cost a relative error
 * ~|y| ulp(y)): the tails take their exponent from the exact end, the central rule gets
 * the first-order end corrections. */
static double sf_gm_M(const sf_gm_ctx *c, double x0, double x1, double sigma)
{
    const double T = 4.0;
    if (!(x0 < x1)) return 0.0;
    double beta = -sigma * c->rho; /* w(y) = alpha + beta y */
    double alpha = sigma * c->ks;
    double y0, y0l, y1, y1l, ph, pl;
    sf_gm_y_of_x(c, x0, &y0, &y0l);
    sf_gm_y_of_x(c, x1, &y1, &y1l);
    if (y0 >= T) { /* upper tail only */
        if (!(y0 < 40.0)) return 0.0;
        sf_gm_tail_prefactor(c, x0, &ph, &pl);
        double S = sf_gm_tail(y0, (y1 - y0) + (y1l - y0l), sf_gm_w_of_x(c, x0, sigma), beta);
        return fma(ph, S, pl * S);
    }
    if (y1 <= -T) { /* lower tail only */
        if (!(y1 > -40.0)) return 0.0;
        sf_gm_tail_prefactor(c, x1, &ph, &pl);
        double S = sf_gm_tail(-y1, (y1 - y0) + (y1l - y0l), sf_gm_w_of_x(c, x1, sigma), -beta);
        return fma(ph, S, pl * S);
    }
    if (!(fabs(c->k) < 40.0)) return 0.0;
    double a = -T, b = T, wa = alpha - beta * T, wb = alpha + beta * T, S = 0.0, St = 0.0;
    if (y0 > -T) { a = y0; wa = sf_gm_w_of_x(c, x0, sigma); }
    if (y1 < T) { b = y1; wb = sf_gm_w_of_x(c, x1, sigma); }
    S = sf_gm_bulk(a, b, wa, wb, beta);
    if (y0 > -T && y0l != 0.0) S -= y0l * sf_gm_gauss_node(a, wa);
    if (y1 < T && y1l != 0.0) S += y1l * sf_gm_gauss_node(b, wb);
    if (y0 < -T) St += sf_gm_tail(T, (-T - y0) - y0l, wa, -beta);
    if (y1 > T) St += sf_gm_tail(T, (y1 - T) + y1l, wb, beta);
    S += sf_gm_exp_m8 * St;
    return fma(c->pre_hi, S, c->pre_lo * S);
}

/* Phi2(h, k; rho) for finite |h|, |k| <= 40 and 0 < |rho| < 1 via (1), split at k/rho */
static double sf_gm_bvn_core(double h, double k, double rho)
{
    if (fabs(h) > fabs(k) || (fabs(h) == fabs(k) && h > k)) {
        /* condition on the larger threshold (M ~ exp(-k^2/2) stays small); the fixed
         * order also makes the result exactly symmetric in (a, b) */
        double t = h; h = k; k = t;
    }
    double xc = k / rho, base = 0.0, p = 0.0, m1, m2 = 0.0;
    sf_gm_ctx c;
    sf_gm_ctx_init(&c, k, rho);
    if (rho > 0.0) { /* Phi(z) = 1 - Phic(z) below xc, Phic(-z) above */
        if (h <= xc) {
            sf_gm_Phi_bs(h, &base, &p);
            m1 = -sf_gm_M(&c, -INFINITY, h, 1.0);
        } else {
            sf_gm_Phi_bs(xc, &base, &p);
            m1 = -sf_gm_M(&c, -INFINITY, xc, 1.0);
            m2 = sf_gm_M(&c, xc, h, -1.0);
        }
    } else {         /* Phi(z) = Phic(-z) below xc, 1 - Phic(z) above */
        if (h <= xc) {
            m1 = sf_gm_M(&c, -INFINITY, h, -1.0);
        } else {
            sf_gm_interval_bs(xc, h, &base, &p);
            m1 = sf_gm_M(&c, -INFINITY, xc, -1.0);
            m2 = -sf_gm_M(&c, xc, h, 1.0);
        }
    }
    double s, e, s2, e2;  /* base + p + m1 + m2 with one final rounding */
    sf_gm_two_sum(p, m1, &s, &e);
    sf_gm_two_sum(s, m2, &s2, &e2);
    double r = base + (s2 + (e + e2));
    return r < 0.0 ? 0.0 : (r > 1.0 ? 1.0 : r);
}

/* Fast path for |rho| <= 0.95 and moderate thresholds: the Drezner & Wesolowsky (1990)
 * / Genz (2004, eq. (3)) angle form
 *     Phi2(h, k; rho) = Phi(h) Phi(k) + 1/(2 pi) int_0^{asin rho} exp(-g(t)) dt,
 *     g(t) = (h^2 - 2 h k sin t + k^2)/(2 cos^2 t) = A/(1 + sin t) + B/(1 - sin t),
 * A = (h + k)^2/4, B = (h - k)^2/4, by Gauss-Legendre with 12, 16, 20 or 32 nodes for
 * |rho| up to 0.3, 0.5, 0.8, 0.95 (Genz uses 6/12/20 up to 0.925 for ~1e-15; these
 * counts were checked against 40-digit references to keep ~1e-16 absolute and ~3e-15
 * relative error).  The integral is unchanged by (h, k) -> (-h, -k), so for h, k > 0 the
 * complement 1 - Phi2 = Phic(h) + Phic(k) - Phic(h) Phic(k) - I is used.  The result is
 * accepted only when it does not come from a cancellation and is not in a far tail
 * (where the rounding of the exponent g would cost ~g eps); otherwise the caller uses
 * the conditional form. */
static int sf_gm_bvn_dw(double h, double k, double rho, double *out)
{
    const double *X, *W;
    double ar = fabs(rho);
    int n;
    if (ar <= 0.3) { X = sf_gm_gl12_x; W = sf_gm_gl12_w; n = 6; }
    else if (ar <= 0.5) { X = sf_gm_gl16_x; W = sf_gm_gl16_w; n = 8; }
    else if (ar <= 0.8) { X = sf_gm_gl20_x; W = sf_gm_gl20_w; n = 10; }
    else { X = sf_gm_gl32_x; W = sf_gm_gl32_w; n = 16; }
    double hl = 0.5 * asin(rho), A = 0.25 * (h + k) * (h + k), B = 0.25 * (h - k) * (h - k);
    double S = 0.0;
    for (int j = 0; j < n; j++) {
        double s1 = sin(hl * (1.0 - X[j])), s2 = sin(hl * (1.0 + X[j]));
        S += W[j] * (exp(-A / (1.0 + s1) - B / (1.0 - s1)) + exp(-A / (1.0 + s2) - B / (1.0 - s2)));
    }
    double I = S * hl * sf_gm_inv_2pi, r, p, pe, s, se;
    if (h > 0.0 && k > 0.0) { /* 1 - (ch + ck - ch ck - I), summed in double-double */
        double ch = sf_gm_Phic(h), ck = sf_gm_Phic(k);
        p = ch * ck;
        pe = fma(ch, ck, -p);
        sf_gm_two_sum(ch, ck, &s, &se);
        sf_gm_two_sum(s, -(p + I), &s, &p);
        r = 1.0 - (s + (se + p - pe));
        if (!(r >= 0.25)) return 0;
    } else {                  /* Phi(h) Phi(k) + I */
        double ph = sf_Phi(h), pk = sf_Phi(k);
        p = ph * pk;
        pe = fma(ph, pk, -p);
        sf_gm_two_sum(p, I, &s, &se);
        r = s + (se + pe);
        if (!(r >= 0.5 * p && r >= 1e-6)) return 0;
    }
    *out = r;
    return 1;
}

/* P(X <= a, Y <= b) for a standard bivariate normal with correlation rho */
static double sf_bvn(double a, double b, double rho)
{
    if (a != a || b != b || rho != rho) return a + b + rho;
    if (a > b) { double t = a; a = b; b = t; } /* exact symmetry in (a, b) */
    if (rho > 1.0) rho = 1.0;
    else if (rho < -1.0) rho = -1.0;
    if (a < -40.0 || b < -40.0) return 0.0; /* <= Phi(-40) < 1e-348 */
    if (a > 40.0) return sf_Phi(b);
    if (b > 40.0) return sf_Phi(a);
    if (rho == 1.0) return sf_Phi(a < b ? a : b);
    if (rho == -1.0) { /* P(-b < X <= a) */
        double base, small;
        sf_gm_interval_bs(-b, a, &base, &small);
        return base + small;
    }
    if (rho == 0.0) {
        if (a > 0.0 && b > 0.0) { /* (1 - ca)(1 - cb) with one rounding near 1 */
            double ca = sf_gm_Phic(a), cb = sf_gm_Phic(b);
            return 1.0 - (ca + cb * (1.0 - ca));
        }
        return sf_Phi(a) * sf_Phi(b);
    }
    double r;
    if (fabs(rho) <= 0.95 && fabs(a) <= 8.0 && fabs(b) <= 8.0 && sf_gm_bvn_dw(a, b, rho, &r))
        return r;
    return sf_gm_bvn_core(a, b, rho);
}

/* P(X > a, Y > b) = Phi2(-a, -b; rho) */
static double sf_bvn_upper(double a, double b, double rho) { return sf_bvn(-a, -b, rho); }
