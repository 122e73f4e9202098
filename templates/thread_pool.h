/* ---- threads over sample ranges ----------------------------------------------------- *
 * sf_run splits one kernel call over ranges of samples: range 0 runs on the calling
 * thread, the others on worker threads that this module starts on first use and keeps.
 * A worker that finishes spins (with the CPU's pause hint) for SF_IDLE_SPIN_NS before it
 * sleeps on a condition variable, so consecutive calls (an ODE solver's steps) hand work
 * over in about a microsecond; a Python thread pool's round trip measured 130
 * microseconds on a 2-vCPU VM, more than the whole kernel at N = 10^3.  Waking a
 * sleeping worker takes longer than that, so a range that no worker has taken by the
 * time the caller is done with its own is run by the caller (a call after a pause costs
 * about what one thread costs, plus the wake-up call).
 *
 * Only one sf_run uses the workers at a time: a call made while another thread's call
 * holds them runs all its ranges on its own thread (no waiting, no oversubscription).
 * After fork() the child starts its own workers (the parent's do not exist there). */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define SF_MAX_WORKERS 255
#define SF_IDLE_SPIN_NS 300000L   /* a worker's spin after its task, before it sleeps */
#define SF_WAIT_SPIN_NS 2000000L  /* the caller's spin for the workers, before it sleeps */

static inline void sf_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long sf_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* A counter that one side advances and the other waits on: spin, then sleep.  The waiter
 * registers as a sleeper before its last check and the poster checks for sleepers after
 * advancing (both sequentially consistent), so a wake-up cannot be lost. */
typedef struct {
    atomic_uint seq;
    atomic_int sleepers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} sf_event;

static void sf_event_init(sf_event *e)
{
    atomic_init(&e->seq, 0u);
    atomic_init(&e->sleepers, 0);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
}

static void sf_event_post(sf_event *e)
{
    atomic_fetch_add(&e->seq, 1u);
    if (atomic_load(&e->sleepers)) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
    }
}

/* Wait until the counter differs from old; returns its new value. */
static unsigned sf_event_wait(sf_event *e, unsigned old, long spin_ns)
{
    unsigned now = atomic_load(&e->seq);
    if (now != old) return now;
    const long until = sf_now_ns() + spin_ns;
    for (int i = 1;; ++i) {
        sf_cpu_relax();
        if ((now = atomic_load(&e->seq)) != old) return now;
        if (i % 64 == 0 && sf_now_ns() > until) break;
    }
    pthread_mutex_lock(&e->mu);
    atomic_fetch_add(&e->sleepers, 1);
    while ((now = atomic_load(&e->seq)) == old) pthread_cond_wait(&e->cv, &e->mu);
    atomic_fetch_sub(&e->sleepers, 1);
    pthread_mutex_unlock(&e->mu);
    return now;
}

typedef int (*sf_threads_fn)(int);

typedef struct {
    int kind;                        /* 0 loss, 1 loss and gradient, 2 Hessian */
    const double *p, *X, *Y, *w;
    long N, n0, n1;
    double *loss, *grad, *H;
    sf_syrk_fn syrk;
    long gbytes;
    sf_threads_fn blas_local;        /* sets the BLAS's threads for the calling thread:
                                        given, every dsyrk call of sf_run uses one */
    int status;
} sf_task;

static void sf_task_run(sf_task *t)
{
    switch (t->kind) {
    case 0: t->status = sf_loss(t->p, t->X, t->Y, t->w, t->N, t->n0, t->n1, t->loss); break;
    case 1: t->status = sf_loss_grad(t->p, t->X, t->Y, t->w, t->N, t->n0, t->n1, t->loss, t->grad); break;
    default:
        t->status = sf_hessian(t->p, t->X, t->Y, t->w, t->N, t->n0, t->n1, t->loss, t->grad,
                               t->H, t->syrk, t->gbytes);
    }
}

/* A worker's slot: the caller writes task while the slot is SF_IDLE, then makes it
 * SF_POSTED; exactly one of the worker (to SF_RUNNING, then SF_DONE) and the caller
 * (to SF_STOLEN, running the range itself) takes it; the caller adds in the range's
 * results and makes the slot SF_IDLE again.  So every slot is SF_IDLE between calls
 * (or, briefly, SF_ZEROING while its worker clears its buffer for the next call: see
 * sf_worker_prezero), and a worker that wakes late never reads a task it does not own. */
enum { SF_IDLE, SF_POSTED, SF_RUNNING, SF_DONE, SF_STOLEN, SF_ZEROING };

typedef struct {
    pthread_t thread;
    sf_event start;                  /* advanced by the caller after posting a task */
    atomic_int state;
    sf_task task;
    double *part;                    /* the range's loss, gradient and triangle, kept */
    long cap;                        /* between calls (cap doubles) so that no call maps
                                        and faults in fresh pages (slow in VMs) */
    long clean;                      /* doubles at the start of part known to be zero */
} sf_worker;

static struct {
    pthread_mutex_t busy;            /* held by the one sf_run that uses the workers */
    int nworkers;
    sf_worker workers[SF_MAX_WORKERS];
    sf_event done;                   /* advanced whenever a worker finishes a task */
} sf_pool = {PTHREAD_MUTEX_INITIALIZER, 0};
static pthread_once_t sf_pool_once = PTHREAD_ONCE_INIT;

/* Doubles of one range's own outputs for a kernel kind: loss, gradient, triangle. */
static long sf_part_size(int kind)
{
    return 1 + (kind >= 1 ? SF_P : 0) + (kind == 2 ? (long)SF_P * SF_P : 0);
}

/* Run task t into part, or fail with status 1 when part is NULL.  Its first `clean`
 * doubles are zero already; the rest of what the task needs is zeroed here. */
static void sf_task_run_into(sf_task *t, double *part, long clean)
{
    if (!part) {
        t->status = 1;
        return;
    }
    const long need = sf_part_size(t->kind);
    if (clean < need) memset(part, 0, sizeof(double) * (size_t)need);
    t->loss = part;
    t->grad = t->kind >= 1 ? part + 1 : NULL;
    t->H = t->kind == 2 ? part + 1 + SF_P : NULL;
    sf_task_run(t);
}

/* Add a range's results in part to the outputs (the lower triangle only). */
static void sf_part_add(int kind, const double *part, double *loss, double *grad, double *H)
{
    *loss += part[0];
    if (kind >= 1)
        for (long i = 0; i < SF_P; ++i) grad[i] += part[1 + i];
    if (kind == 2)
        for (long i = 0; i < SF_P; ++i)
            for (long j = 0; j <= i; ++j) H[i * SF_P + j] += part[1 + SF_P + i * SF_P + j];
}

/* The worker's range buffer with room for the task's outputs, or NULL. */
static double *sf_worker_part(sf_worker *wk)
{
    const long need = sf_part_size(wk->task.kind);
    if (wk->cap < need) {
        free(wk->part);
        wk->part = sf_alloc_doubles(need);
        wk->cap = wk->part ? need : 0;
        wk->clean = 0;
    }
    return wk->part;
}

/* Run the worker's posted task into its range buffer (the worker, or the caller that
 * took the task over); the buffer is dirty afterwards. */
static void sf_worker_run(sf_worker *wk)
{
    double *part = sf_worker_part(wk);
    sf_task_run_into(&wk->task, part, wk->clean);
    wk->clean = 0;
}

/* After its task, the worker zeroes its range buffer for the next call as soon as the
 * caller has added it in (slot SF_IDLE again), while the caller mirrors H and returns
 * to Python.  Zeroing at the start of the next task instead put it on that call's
 * critical path, and cost more than zeroing lines in its own cache should: the caller
 * had just read them, so the worker had to take them back (two-thread Hessian at
 * k = 10, N = 10^3: the worker's memset took 1.2 us of a 42 us call, and 5 us when
 * the two vCPUs were in their slow state).  The slot is SF_ZEROING meanwhile; the
 * caller waits for SF_IDLE before it posts the next task, so the buffer has one owner
 * at a time. */
static void sf_worker_prezero(sf_worker *wk, int kind)
{
    const long until = sf_now_ns() + SF_IDLE_SPIN_NS;
    for (int i = 1; atomic_load(&wk->state) == SF_DONE; ++i) {
        sf_cpu_relax();
        if (i % 64 == 0 && sf_now_ns() > until) return;   /* the caller is descheduled */
    }
    int idle = SF_IDLE;
    if (!atomic_compare_exchange_strong(&wk->state, &idle, SF_ZEROING)) return;
    const long need = sf_part_size(kind);
    if (wk->part && wk->cap >= need) {
        memset(wk->part, 0, sizeof(double) * (size_t)need);
        wk->clean = need;
    }
    atomic_store(&wk->state, SF_IDLE);
}

static void *sf_worker_main(void *arg)
{
    sf_worker *wk = (sf_worker *)arg;
    unsigned seen = 0;
    int blas_single = 0;
    for (;;) {
        seen = sf_event_wait(&wk->start, seen, SF_IDLE_SPIN_NS);
        int posted = SF_POSTED;
        if (!atomic_compare_exchange_strong(&wk->state, &posted, SF_RUNNING))
            continue;                /* the caller ran it already */
        sf_task *t = &wk->task;
        if (t->kind == 2 && t->syrk && t->blas_local && !blas_single) {
            t->blas_local(1);        /* dsyrk from every thread at once: no BLAS threads */
            blas_single = 1;
        }
        const int kind = t->kind;
        sf_worker_run(wk);
        atomic_store(&wk->state, SF_DONE);
        sf_event_post(&sf_pool.done);
        sf_worker_prezero(wk, kind);
    }
    return NULL;
}

/* In a forked child only the forking thread exists: forget the parent's workers. */
static void sf_pool_atfork_child(void)
{
    pthread_mutex_init(&sf_pool.busy, NULL);
    sf_pool.nworkers = 0;
    sf_event_init(&sf_pool.done);
}

static void sf_pool_setup(void)
{
    sf_event_init(&sf_pool.done);
    pthread_atfork(NULL, NULL, sf_pool_atfork_child);
}

/* Start workers until there are `want` (fewer if the system refuses threads). */
static void sf_pool_grow(int want)
{
    while (sf_pool.nworkers < want) {
        sf_worker *wk = &sf_pool.workers[sf_pool.nworkers];
        sf_event_init(&wk->start);
        atomic_init(&wk->state, SF_IDLE);
        wk->part = NULL;
        wk->cap = 0;
        wk->clean = 0;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int err = pthread_create(&wk->thread, &attr, sf_worker_main, wk);
        pthread_attr_destroy(&attr);
        if (err) break;
        ++sf_pool.nworkers;
    }
}

/* Run one kernel over the samples n0 <= n < n1 split into ntasks nearly equal ranges (as
 * many as Python's symflow.problems._parts asks for): kind 0 the loss, 1 loss and
 * gradient, 2 also the Hessian.  It sets *loss, grad and H (grad and H may be NULL when
 * the kind does not use them; their contents on entry do not matter).  For kind 2, loss
 * and grad may also be NULL (a Hessian alone, as Net.hessian asks for): the kernels then
 * sum them into a buffer of this call, on the stack up to SF_RUN_STACK_P parameters
 * (8 KB, small enough for any thread's stack), else allocated (Python's numpy.empty and
 * ffi.from_buffer for a gradient and a loss it would not return cost ~0.5 us of a 4.6 us
 * Hessian at P = 41).  It zeroes them (of H the lower triangle), the kernels add their
 * sums to that, and for kind 2 it then copies the lower triangle of H into the upper
 * one.  Zeroing here rather than taking zeroed arrays from Python writes half of H: at
 * P = 401 about 8 us (perf) where numpy.zeros spent 15 us on the whole, and that half is
 * then in cache.  Range 0 adds straight into them; every other range is computed from
 * zero into a buffer of its own and added in, in the order of the ranges, whichever
 * thread ran it, so that the result does not depend on the threads' timing.  Returns 0,
 * 1 when memory ran out, or 2 (nothing computed) when a parameter is not finite. */
#define SF_RUN_STACK_P 1024
int sf_run(int kind, const double *p, const double *X, const double *Y, const double *w,
           long N, long n0, long n1, int ntasks, double *loss, double *grad, double *H,
           sf_syrk_fn syrk, long gbytes, sf_threads_fn blas_local)
{
    /* x - x is 0 for finite x and NaN for +-inf and NaN, so these sums are 0 exactly
     * when every parameter is finite.  Four independent sums: a chain of compares (or
     * of one sum) costs about two cycles per parameter, 0.3 us of a 5 us gradient call
     * at P = 401. */
    double f0 = 0.0, f1 = 0.0, f2 = 0.0, f3 = 0.0;
    long i = 0;
    for (; i + 4 <= SF_P; i += 4) {
        f0 += p[i] - p[i];
        f1 += p[i + 1] - p[i + 1];
        f2 += p[i + 2] - p[i + 2];
        f3 += p[i + 3] - p[i + 3];
    }
    for (; i < SF_P; ++i) f0 += p[i] - p[i];
    if (!((f0 + f1) + (f2 + f3) == 0.0)) return 2;
    if (ntasks > n1 - n0) ntasks = n1 - n0 > 1 ? (int)(n1 - n0) : 1;
    if (ntasks < 1) ntasks = 1;
    grad = kind >= 1 ? grad : NULL;
    H = kind == 2 ? H : NULL;
    double own_loss, own_grad[SF_P <= SF_RUN_STACK_P ? SF_P : 1], *heap_grad = NULL;
    if (!loss) loss = &own_loss;
    if (kind == 2 && !grad) {
        if (SF_P <= SF_RUN_STACK_P) grad = own_grad;
        else if (!(grad = heap_grad = malloc(sizeof(double) * SF_P))) return 1;
    }
    *loss = 0.0;
    if (grad) memset(grad, 0, sizeof(double) * SF_P);
    /* of H the lower triangle (the mirror overwrites what the kernels add above it), row
     * by row; up to 128 parameters (at most 128 KB) one memset of the whole is faster */
    if (H && SF_P <= 128)
        memset(H, 0, sizeof(double) * SF_P * SF_P);
    else if (H)
        for (long r = 0; r < SF_P; ++r) memset(H + r * SF_P, 0, sizeof(double) * (size_t)(r + 1));
#define SF_RANGE(t) {kind, p, X, Y, w, N, n0 + (n1 - n0) * (t) / ntasks,                   \
                     n0 + (n1 - n0) * ((t) + 1) / ntasks, loss, grad, H, syrk, gbytes,      \
                     blas_local, 0}
    int spread = 0;                  /* ranges 1 .. spread are posted to workers 0 .. spread-1 */
    if (ntasks > 1) {
        pthread_once(&sf_pool_once, sf_pool_setup);
        if (pthread_mutex_trylock(&sf_pool.busy) == 0) {
            sf_pool_grow(ntasks - 1 < SF_MAX_WORKERS ? ntasks - 1 : SF_MAX_WORKERS);
            spread = ntasks - 1 < sf_pool.nworkers ? ntasks - 1 : sf_pool.nworkers;
            if (spread == 0) pthread_mutex_unlock(&sf_pool.busy);
        }
    }
    for (int t = 1; t <= spread; ++t) {
        sf_worker *wk = &sf_pool.workers[t - 1];
        const sf_task task = SF_RANGE(t);
        wk->task = task;   /* SF_IDLE or SF_ZEROING: the worker does not read task now */
        for (int idle = SF_IDLE; !atomic_compare_exchange_weak(&wk->state, &idle, SF_POSTED);
             idle = SF_IDLE)
            sf_cpu_relax();   /* the worker is zeroing its buffer (sf_worker_prezero) */
        sf_event_post(&wk->start);
    }
    /* the caller's ranges: with blas_local given, its dsyrk calls start no BLAS threads */
    const int quiet = kind == 2 && syrk && blas_local;
    const int before = quiet ? blas_local(1) : 0;
    sf_task first = SF_RANGE(0);
    sf_task_run(&first);
    int status = first.status;
    for (int t = 1; t <= spread; ++t) {  /* ranges no worker has taken yet */
        sf_worker *wk = &sf_pool.workers[t - 1];
        int posted = SF_POSTED;
        if (atomic_compare_exchange_strong(&wk->state, &posted, SF_STOLEN))
            sf_worker_run(wk);
    }
    for (int t = 1; t <= spread; ++t) {  /* add them in, in order, as they finish */
        sf_worker *wk = &sf_pool.workers[t - 1];
        for (;;) {
            const unsigned seq = atomic_load(&sf_pool.done.seq);
            const int state = atomic_load(&wk->state);
            if (state == SF_DONE || state == SF_STOLEN) break;
            sf_event_wait(&sf_pool.done, seq, SF_WAIT_SPIN_NS);
        }
        status |= wk->task.status;
        if (!wk->task.status) sf_part_add(kind, wk->part, loss, grad, H);
        if (wk->cap > SF_SCRATCH_KEEP) {  /* kept up to the kernels' workspace limit */
            free(wk->part);
            wk->part = NULL;
            wk->cap = 0;
        }
        atomic_store(&wk->state, SF_IDLE);
    }
    if (spread) pthread_mutex_unlock(&sf_pool.busy);
    for (int t = spread + 1; t < ntasks; ++t) {  /* no worker for these (another call has them) */
        sf_task task = SF_RANGE(t);
        double *part = sf_scratch(SF_WS_PART, sf_part_size(kind));
        sf_task_run_into(&task, part, 0);
        status |= task.status;
        if (!task.status) sf_part_add(kind, part, loss, grad, H);
        sf_scratch_done(SF_WS_PART);
    }
    if (quiet) blas_local(before);
#undef SF_RANGE
    if (kind == 2 && !status) sf_mirror(H);
    free(heap_grad);
    return status;
}
