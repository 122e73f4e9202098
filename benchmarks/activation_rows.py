"""The activation loops of the kernels, one pass against two passes per row of samples.

    python benchmarks/activation_rows.py [--rows 100] [--repeats 30]

The kernels evaluate each hidden neuron's activation (and its derivatives) on a row of
32 samples (SF_GB).  Sigmoid, softplus and sech all start from e = exp(-|x|); since
this change the row loop computes e for all 32 samples first and the rest in a second
loop (``sf_*_e`` in templates/math_helpers.h), instead of one loop that calls the
one-argument helpers.  This compiles both forms from the current math_helpers.h, with
symflow's compiler and flags and the kernels' function multi-versioning (AVX-512, or
AVX2+FMA, where the CPU has it), times them on `--rows` rows held in L1 (best of
`--repeats` runs of 100 passes), and checks that both give the same bits.  On x86-64
with GCC it then builds the same loops once per instruction set (x86-64-v4: AVX-512;
x86-64-v3: AVX2+FMA; the baseline) and times those the CPU can run, so the second
table shows what each of the kernels' clones gains.  Results go to stdout and to
benchmarks/results/activation_rows.csv (one row per loop and build).
"""

import argparse
import platform
import signal
import subprocess
import tempfile
from pathlib import Path

from _results import write_rows  # benchmarks/_results.py

from symflow.build import compiler
from symflow.emit import template_text

# name, outputs, one-pass body, two-pass body (x = z[i], e = ex[b]; outputs o0, o1, o2)
CASES = [
    ("softplus", 1, "o0[i] = sf_softplus(x);", "o0[i] = sf_softplus_e(x, e);"),
    ("softplus + 1st derivative", 2,
     "o1[i] = sf_sigmoid(x); o0[i] = sf_softplus(x);",
     "o1[i] = sf_sigmoid_e(x, e); o0[i] = sf_softplus_e(x, e);"),
    ("softplus + 1st, 2nd derivatives", 3,
     "const double t = sf_sigmoid(x); o1[i] = t; o2[i] = t * sf_sigmoid(-x); o0[i] = sf_softplus(x);",
     "const double t = sf_sigmoid_e(x, e); o1[i] = t; o2[i] = t * sf_sigmoid_e(-x, e); "
     "o0[i] = sf_softplus_e(x, e);"),
    ("sigmoid + 1st derivative", 2,
     "const double t = sf_sigmoid(x); o1[i] = t * sf_sigmoid(-x); o0[i] = t;",
     "const double t = sf_sigmoid_e(x, e); o1[i] = t * sf_sigmoid_e(-x, e); o0[i] = t;"),
    ("tanh + 1st derivative", 2,
     "const double c = sf_sech(x); o1[i] = c * c; o0[i] = sf_tanh(x);",
     "const double c = sf_sech_e(x, e); o1[i] = c * c; o0[i] = sf_tanh(x);"),
]

PROLOGUE = r"""
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef M_SQRT1_2
#define M_SQRT1_2 0.70710678118654752440
#endif
#ifdef CLONES_ONE_ISA   /* -DCLONES_ONE_ISA='"arch=..."' or '"default"': one build */
#define CLONES __attribute__((target(CLONES_ONE_ISA), noinline))
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), \
                                            noinline))
#else
#define CLONES __attribute__((noinline))
#endif
#define GB 32
"""

LOOPS = r"""
CLONES void one_{c}(const double *restrict z, double *restrict o0, double *restrict o1,
                    double *restrict o2, long rows)
{{
    (void)o1; (void)o2;
    for (long r = 0; r < rows * GB; r += GB)
        for (int b = 0; b < GB; ++b) {{
            const long i = r + b; const double x = z[i];
            {one}
        }}
}}
CLONES void two_{c}(const double *restrict z, double *restrict o0, double *restrict o1,
                    double *restrict o2, long rows)
{{
    (void)o1; (void)o2;
    for (long r = 0; r < rows * GB; r += GB) {{
        double ex[GB];
        for (int b = 0; b < GB; ++b) ex[b] = sf_exp_nonpos(-fabs(z[r + b]));
        for (int b = 0; b < GB; ++b) {{
            const long i = r + b; const double x = z[i], e = ex[b];
            {two}
        }}
    }}
}}
"""

MAIN = r"""
typedef void (*loop_fn)(const double *restrict, double *restrict, double *restrict,
                        double *restrict, long);
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static double best_ns(loop_fn f, const double *z, double **o, long rows, int repeats)
{
    double best = 1e30;
    for (int rep = 0; rep < repeats; ++rep) {
        const double t0 = now();
        for (int it = 0; it < 100; ++it) f(z, o[0], o[1], o[2], rows);
        const double t = now() - t0;
        if (t < best) best = t;
    }
    return best / (100.0 * rows * GB) * 1e9;
}
int main(int argc, char **argv)
{
    const long rows = atol(argv[1]);
    const int repeats = atoi(argv[2]);
    const size_t bytes = (size_t)rows * GB * sizeof(double);
    double *z = malloc(bytes), *o[3], *p[3];
    for (int j = 0; j < 3; ++j) { o[j] = calloc(rows * GB, 8); p[j] = calloc(rows * GB, 8); }
    /* pre-activations spread over [-6, 6] (a fixed LCG, so every run sees the same) */
    uint64_t s = 12345;
    for (long i = 0; i < rows * GB; ++i) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        z[i] = 12.0 * ((double)(s >> 11) / 9007199254740992.0) - 6.0;
    }
    loop_fn one[] = {ONE_FNS}, two[] = {TWO_FNS};
    const int nout[] = {NOUTS};
    for (int c = 0; c < (int)(sizeof nout / sizeof nout[0]); ++c) {
        const double t1 = best_ns(one[c], z, o, rows, repeats);
        const double t2 = best_ns(two[c], z, p, rows, repeats);
        int same = 1;
        for (int j = 0; j < nout[c]; ++j) same &= memcmp(o[j], p[j], bytes) == 0;
        printf("%d %.4f %.4f %d\n", c, t1, t2, same);
    }
    return 0;
}
"""


def source() -> str:
    parts = [PROLOGUE, template_text("math_helpers.h")]
    for c, (_, _, one, two) in enumerate(CASES):
        parts.append(LOOPS.format(c=c, one=one, two=two))
    main = (MAIN.replace("ONE_FNS", ", ".join(f"one_{c}" for c in range(len(CASES))))
            .replace("TWO_FNS", ", ".join(f"two_{c}" for c in range(len(CASES))))
            .replace("NOUTS", ", ".join(str(case[1]) for case in CASES)))
    parts.append(main)
    return "\n".join(parts)


# (label, -D value) of the one-ISA builds: the kernels' clones (templates/kernels.c.j2)
ISAS = [("x86-64-v4 (AVX-512)", '"arch=x86-64-v4"'), ("x86-64-v3 (AVX2+FMA)", '"arch=x86-64-v3"'),
        ("baseline", '"default"')]


def run(cc, flags, tmp: Path, tag: str, defines: list[str], rows: int, repeats: int):
    """Build and run the timing program (tmp/activation_rows.c); ``{case: (one ns, two ns, same bits)}``, or None
    when the CPU cannot run this build (it stops on an illegal instruction)."""
    c_file, exe = tmp / "activation_rows.c", tmp / f"activation_rows_{tag}"
    subprocess.run([*cc, *flags, *defines, str(c_file), "-o", str(exe), "-lm"], check=True)
    proc = subprocess.run([str(exe), str(rows), str(repeats)], capture_output=True, text=True)
    if proc.returncode == -signal.SIGILL:
        return None
    proc.check_returncode()
    out = {}
    for line in proc.stdout.splitlines():
        c, t1, t2, same = line.split()
        out[CASES[int(c)][0]] = (float(t1), float(t2), same == "1")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100, help="rows of 32 samples (100: in L1)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    cc, flags = compiler()
    flags = [f for f in flags if f != "-fPIC"]
    one_isa = platform.machine() in ("x86_64", "AMD64") and "gcc" in Path(cc[0]).name
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "activation_rows.c").write_text(source())
        clones = run(cc, flags, tmp, "clones", [], args.rows, args.repeats)
        by_isa = {label: run(cc, flags, tmp, str(i), [f"-DCLONES_ONE_ISA={value}"], args.rows,
                             args.repeats)
                  for i, (label, value) in enumerate(ISAS)} if one_isa else {}
    rows = [{"loop": name, "build": build, "one_pass_ns": t1, "two_pass_ns": t2,
             "ratio": t1 / t2, "same_bits": same}
            for build, res in {"clones": clones, **by_isa}.items()
            for name, (t1, t2, same) in (res or {}).items()]
    print(f"{'loop':34s} {'one pass':>10} {'two passes':>11} {'one/two':>8}  same bits")
    for name, (t1, t2, same) in clones.items():
        print(f"{name:34s} {t1:7.2f} ns {t2:8.2f} ns {t1 / t2:8.2f}  {'yes' if same else 'NO'}")
    if by_isa:
        labels = [label for label, res in by_isa.items() if res]
        print("\ntwo passes per sample (in brackets: one pass / two passes), "
              "built for one instruction set each")
        print(f"{'loop':34s}" + "".join(f"{label:>22s}" for label in labels))
        for name in clones:
            cells = (by_isa[label][name] for label in labels)
            print(f"{name:34s}" + "".join(f"{t2:11.2f} ns ({t1 / t2:4.2f})" for t1, t2, _ in cells))
        for label, res in by_isa.items():
            if res is None:
                print(f"({label}: this CPU cannot run it)")
    write_rows("activation_rows", rows)
    bad = [f"{r['loop']!r} ({r['build']})" for r in rows if not r["same_bits"]]
    if bad:
        raise SystemExit("the two forms gave different results: " + ", ".join(bad))

if __name__ == "__main__":
    main()
