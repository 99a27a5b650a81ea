/* The fused E-step of dgmm on a GPU: two kernels per tile, compiled by NVRTC through CuPy.
 *
 * The same text is compiled by the host C compiler with DGMM_HOST defined, each kernel then a loop
 * over its thread indices, so the tests check its arithmetic on machines without a GPU
 * (dgmm.kernels.cuda_estep.HostLauncher). Plain C that is also C++: no headers on the device.
 *
 * Defined before this text (dgmm.kernels.cuda_estep.kernel_source):
 *   D, K   features and components;  COV  0 full, 1 tied, 2 diag or spherical (per-feature precisions)
 *   IB     rows of S1 and S2 (features i) each dgmm_stats thread sums
 *   TRI    1 when every U is upper triangular (as dgmm's precision factors are): y_j sums i <= j only
 *   XT     the element type of the data;  REAL  the compute type (float or double)
 *
 * dgmm_resp: one thread per row t of the tile.
 *   z = (REAL)(x_t − c);  m_k = ‖(z − a_k) U_k‖² (full), ‖z U − a_k U‖² (tied), Σ_j (z_j − a_kj)² P_kj (diag);
 *   lp_k = log_norm_k − m_k / 2;  R[t, k] = w_t exp(lp_k − lse_t), exactly 0 below the floor;  LL[t] = w_t lse_t.
 * dgmm_stats: one thread per (slice of rows, component k, IB features i), summing over its slice in row order:
 *   S1P[s, k, i] = Σ_t R[t, k] d_ti,  S2P[s, k, i, j] = Σ_t R[t, k] d_ti d_tj for j <= i (full, tied) or
 *   Σ_t R[t, k] d_ti² at j = 0 (diag), with d_t = z_t − a_k: centred on the old means, in double.
 * The caller sums the slices in order and mirrors the lower triangles, so results depend only on the tile.
 */

#ifdef DGMM_HOST
#include <math.h>
#define DEVICE static inline
#define UNROLL
#else
#define DEVICE __device__ __forceinline__
#define UNROLL _Pragma("unroll") /* fixed trip counts: the per-thread arrays stay in registers */
#endif

#define BIG 1.0e308
#define LP_REGISTERS 32 /* up to this many log-probabilities a row stay in the thread's registers */
#if K <= LP_REGISTERS
#define UNROLL_K UNROLL /* every lp[k] a register: the component loops unrolled */
#else
#define UNROLL_K
#endif

DEVICE REAL centred(const XT *X, long long t, int j, long long sr, long long sc, const double *centre)
{
    return (REAL)((double)X[t * sr + (long long)j * sc] - centre[j]);
}

DEVICE void resp_row(long long t, const XT *X, long long sr, long long sc, int has_w,
                     const double *W, const double *centre, const REAL *shift, const REAL *U, const REAL *shift_u,
                     const double *log_norm, double floor_, double *R, double *LL)
{
    double w = has_w ? W[t] : 1.0;
    int j, k;
    if (w == 0.0) {
        for (k = 0; k < K; ++k) R[t * K + k] = 0.0;
        LL[t] = 0.0;
        return;
    }
    REAL z[D];
#if K <= LP_REGISTERS
    double lp[K];
#define LP(k) lp[k]
#else /* many components (a speaker's background model): the row of R holds them until they become R */
#define LP(k) R[t * K + (k)]
#endif
    for (j = 0; j < D; ++j) z[j] = centred(X, t, j, sr, sc, centre);
#if COV == 1
    REAL y[D];
    for (j = 0; j < D; ++j) {
        REAL acc = 0;
        int i;
        for (i = 0; i < D; ++i)
            if (!TRI || i <= j) acc += z[i] * U[i * D + j];
        y[j] = acc;
    }
#endif
    double peak = -BIG;
    UNROLL_K
    for (k = 0; k < K; ++k) {
        REAL m = 0;
#if COV == 0
        REAL zc[D];
        int i;
        for (i = 0; i < D; ++i) zc[i] = z[i] - shift[k * D + i];
        for (j = 0; j < D; ++j) {
            REAL acc = 0;
            const REAL *u = U + (long long)k * D * D + j;
            for (i = 0; i < D; ++i)
                if (!TRI || i <= j) acc += zc[i] * u[i * D];
            m += acc * acc;
        }
#elif COV == 1
        for (j = 0; j < D; ++j) {
            REAL v = y[j] - shift_u[k * D + j];
            m += v * v;
        }
#else
        for (j = 0; j < D; ++j) {
            REAL v = z[j] - shift[k * D + j];
            m += v * v * U[k * D + j];
        }
#endif
        LP(k) = log_norm[k] - 0.5 * (double)m;
        if (LP(k) > peak) peak = LP(k);
    }
    if (!(peak > -BIG && peak < BIG)) peak = 0.0; /* no finite log-probability (or NaN): as logsumexp */
    double sum = 0.0;
    UNROLL_K
    for (k = 0; k < K; ++k) sum += exp(LP(k) - peak);
    double lse = log(sum) + peak;
    UNROLL_K
    for (k = 0; k < K; ++k) {
        double lr = LP(k) - lse;
        R[t * K + k] = lr < floor_ ? 0.0 : w * exp(lr);
    }
    LL[t] = w * lse;
}

DEVICE void stats_thread(long long g, long long n, long long rows, const XT *X, long long sr, long long sc,
                         const double *centre, const REAL *shift, const double *R, double *S1P, double *S2P)
{
    const int blocks = (D + IB - 1) / IB;
    int i0 = (int)(g % blocks) * IB;
    int k = (int)((g / blocks) % K);
    long long s = g / ((long long)blocks * K);
    long long t, start = s * rows, stop = start + rows < n ? start + rows : n;
    int b;
    double a1[IB], rd[IB];
#if COV == 2
    double a2[IB];
#else
    int j;
    double acc[IB][D];
#endif
    UNROLL
    for (b = 0; b < IB; ++b) {
        a1[b] = 0.0;
#if COV == 2
        a2[b] = 0.0;
#else
        UNROLL
        for (j = 0; j < D; ++j) acc[b][j] = 0.0;
#endif
    }
    for (t = start; t < stop; ++t) {
        double r = R[t * K + k];
        if (r == 0.0) continue;
        UNROLL
        for (b = 0; b < IB; ++b) {
            int i = i0 + b < D ? i0 + b : D - 1;
            double di = (double)(centred(X, t, i, sr, sc, centre) - shift[k * D + i]);
            rd[b] = r * di;
            a1[b] += rd[b];
#if COV == 2
            a2[b] += rd[b] * di;
#endif
        }
#if COV != 2
        /* each d_tj once for the IB rows of S2 this thread sums: the loads amortised over IB products */
        UNROLL
        for (j = 0; j < D; ++j) {
            double dj = (double)(centred(X, t, j, sr, sc, centre) - shift[k * D + j]);
            UNROLL
            for (b = 0; b < IB; ++b)
                if (j <= i0 + b) acc[b][j] += rd[b] * dj;
        }
#endif
    }
    UNROLL
    for (b = 0; b < IB; ++b) {
        int i = i0 + b;
        if (i >= D) break;
        S1P[(s * K + k) * D + i] = a1[b];
#if COV == 2
        S2P[(s * K + k) * D + i] = a2[b];
#else
        double *out = S2P + ((s * K + k) * D + i) * D;
        UNROLL
        for (j = 0; j < D; ++j) out[j] = j <= i ? acc[b][j] : 0.0;
#endif
    }
}

#ifdef DGMM_HOST
void dgmm_resp(long long n, const XT *X, long long sr, long long sc, int has_w, const double *W,
               const double *centre, const REAL *shift, const REAL *U, const REAL *shift_u, const double *log_norm, double floor_,
               double *R, double *LL)
{
    long long t;
    for (t = 0; t < n; ++t) resp_row(t, X, sr, sc, has_w, W, centre, shift, U, shift_u, log_norm, floor_, R, LL);
}

void dgmm_stats(long long threads, long long n, long long rows, const XT *X, long long sr, long long sc,
                const double *centre, const REAL *shift, const double *R, double *S1P, double *S2P)
{
    long long g;
    for (g = 0; g < threads; ++g) stats_thread(g, n, rows, X, sr, sc, centre, shift, R, S1P, S2P);
}
#else
extern "C" __global__ void dgmm_resp(long long n, const XT *X, long long sr, long long sc, int has_w,
                                     const double *W,
                                     const double *centre, const REAL *shift, const REAL *U,
                                     const REAL *shift_u, const double *log_norm, double floor_, double *R,
                                     double *LL)
{
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) resp_row(t, X, sr, sc, has_w, W, centre, shift, U, shift_u, log_norm, floor_, R, LL);
}

extern "C" __global__ void dgmm_stats(long long threads, long long n, long long rows, const XT *X, long long sr,
                                      long long sc, const double *centre, const REAL *shift, const double *R,
                                      double *S1P, double *S2P)
{
    long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (g < threads) stats_thread(g, n, rows, X, sr, sc, centre, shift, R, S1P, S2P);
}
#endif
