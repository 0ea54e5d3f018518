"""Compiled (numba) kernels of the generation core: one recurrent step and one sampling draw.

Imported only through ``charpoet.stepper`` and ``charpoet.sampling``, which fall back to
torch and numpy when numba is missing. Compiled on first use and cached on disk, so only
the first process pays the compilation.

Why numba: one step of a small model is a chain of matrix-vector products over ~3 MB of
weights. ``nn.LSTM`` on the CPU spends more time preparing its oneDNN kernel on every call
than computing; a loop compiled to AVX2 code that reads each weight once, with the
embedding folded into layer 0's input projection, runs near the memory bandwidth.

Shapes: N streams, L layers, H rnn size, G gates (4 LSTM: i f g o; 3 GRU: r z n),
V vocabulary, E embedding size. Weights are PyTorch's, row-major.
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

# The model's arithmetic may reorder sums and fuse multiply-adds (what vectorising a dot product
# needs) but keeps NaN and inf meaning what they mean. The sampler's arithmetic is exact IEEE, so it
# draws what the numpy reference draws. Each function states its flags: numba hands a caller's
# flags down to callees that do not.
_FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
_EXACT = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)
LSTM, GRU = 0, 1


@njit(**_FLAGS)
def _matvec_add(w, x, out):
    """out += w @ x for w (R, K), x (K,), out (R,); four rows per pass over x."""
    rows, k = w.shape
    for r in range(0, rows - 3, 4):
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for i in range(k):
            xi = x[i]
            a0 += w[r, i] * xi
            a1 += w[r + 1, i] * xi
            a2 += w[r + 2, i] * xi
            a3 += w[r + 3, i] * xi
        out[r] += a0
        out[r + 1] += a1
        out[r + 2] += a2
        out[r + 3] += a3
    for r in range(rows - rows % 4, rows):
        acc = np.float32(0.0)
        for i in range(k):
            acc += w[r, i] * x[i]
        out[r] += acc


@njit(**_FLAGS)
def _tanh(x):
    """tanh in float32 arithmetic that vectorises: the rational approximation of Eigen's
    ``generic_fast_tanh_float`` (a few float32 ulps from ``np.tanh``; libm's tanh and exp are
    scalar calls and took most of a step's cell time)."""
    if x > np.float32(7.90531110763549805):  # tanh rounds to +-1 beyond; NaN stays NaN
        x = np.float32(7.90531110763549805)
    elif x < np.float32(-7.90531110763549805):
        x = np.float32(-7.90531110763549805)
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q


@njit(**_FLAGS)
def _sigmoid(x):
    return np.float32(0.5) + np.float32(0.5) * _tanh(np.float32(0.5) * x)


@njit(**_FLAGS)
def _lstm_cell(gates, c, h_out, c_out, lo, hi):
    """One stream's LSTM cell for units lo..hi-1 from its pre-activations ``gates`` (4H,) = i f g o;
    c, h_out, c_out (H,)."""
    hidden = c.shape[0]
    for j in range(lo, hi):
        i_gate = _sigmoid(gates[j])
        f_gate = _sigmoid(gates[hidden + j])
        g_gate = _tanh(gates[2 * hidden + j])
        o_gate = _sigmoid(gates[3 * hidden + j])
        cj = f_gate * c[j] + i_gate * g_gate
        c_out[j] = cj
        h_out[j] = o_gate * _tanh(cj)


@njit(**_FLAGS)
def _gru_cell(gi, gh, h, h_out, lo, hi):
    """One stream's GRU cell for units lo..hi-1 from input and recurrent pre-activations gi, gh (3H,)
    = r z n; h, h_out (H,)."""
    hidden = h.shape[0]
    for j in range(lo, hi):
        r_gate = _sigmoid(gi[j] + gh[j])
        z_gate = _sigmoid(gi[hidden + j] + gh[hidden + j])
        n_gate = _tanh(gi[2 * hidden + j] + r_gate * gh[2 * hidden + j])
        h_out[j] = (np.float32(1.0) - z_gate) * n_gate + z_gate * h[j]


@njit(**_FLAGS)
def cells(cell, gi, gh, b_i, b_h, h, c, h_out, c_out, ln_w, ln_b, x):
    """The cells of one layer for many streams after its matrix products, feature-major (``Stepper``'s
    batched path): every array is (features, N), so each loop runs along the streams.

    gi (G*H, N) input pre-activations, for an LSTM including the recurrent product; gh (G*H, N) a
    GRU's recurrent ones; b_i, b_h (G*H,) biases to add to them (no entries: none); h, c, h_out,
    c_out, x (H, N): the state in and out and the layer's output, layer-normed over the features
    when ``ln_w`` (H,) has entries (else ``x`` = ``h_out``).
    """
    hidden, streams = h.shape
    for j in range(hidden):
        if cell == LSTM:
            bi = bf = bg = bo = np.float32(0.0)
            if b_i.shape[0]:
                bi, bf, bg, bo = b_i[j], b_i[hidden + j], b_i[2 * hidden + j], b_i[3 * hidden + j]
            for s in range(streams):
                i_gate = _sigmoid(gi[j, s] + bi)
                f_gate = _sigmoid(gi[hidden + j, s] + bf)
                g_gate = _tanh(gi[2 * hidden + j, s] + bg)
                o_gate = _sigmoid(gi[3 * hidden + j, s] + bo)
                cj = f_gate * c[j, s] + i_gate * g_gate
                c_out[j, s] = cj
                h_out[j, s] = o_gate * _tanh(cj)
        else:
            br = bz = bn = hr = hz = hn = np.float32(0.0)
            if b_i.shape[0]:
                br, bz, bn = b_i[j], b_i[hidden + j], b_i[2 * hidden + j]
            if b_h.shape[0]:
                hr, hz, hn = b_h[j], b_h[hidden + j], b_h[2 * hidden + j]
            for s in range(streams):
                r_gate = _sigmoid(gi[j, s] + br + gh[j, s] + hr)
                z_gate = _sigmoid(gi[hidden + j, s] + bz + gh[hidden + j, s] + hz)
                n_gate = _tanh(gi[2 * hidden + j, s] + bn + r_gate * (gh[2 * hidden + j, s] + hn))
                h_out[j, s] = (np.float32(1.0) - z_gate) * n_gate + z_gate * h[j, s]
    if ln_w.shape[0] == 0:
        x[:] = h_out
        return
    mean = np.zeros(streams, np.float32)
    var = np.zeros(streams, np.float32)
    for j in range(hidden):
        for s in range(streams):
            mean[s] += h_out[j, s]
    mean /= np.float32(hidden)
    for j in range(hidden):
        for s in range(streams):
            d = h_out[j, s] - mean[s]
            var[s] += d * d
    inv = np.float32(1.0) / np.sqrt(var / np.float32(hidden) + np.float32(1e-5))
    for j in range(hidden):
        for s in range(streams):
            x[j, s] = (h_out[j, s] - mean[s]) * inv[s] * ln_w[j] + ln_b[j]


@njit(**_FLAGS)
def _layer_norm(x, weight, bias, out):
    n = x.shape[0]
    mean = np.float32(0.0)
    for j in range(n):
        mean += x[j]
    mean /= n
    var = np.float32(0.0)
    for j in range(n):
        d = x[j] - mean
        var += d * d
    inv = np.float32(1.0) / np.sqrt(var / n + np.float32(1e-5))
    for j in range(n):
        out[j] = (x[j] - mean) * inv * weight[j] + bias[j]


@njit(**_FLAGS)
def _units(layer, lo, hi, token, x, h, c, h_out, c_out, gi, gh, cell, table, w_ih0, w_ih, w_hh, b_in, b_hh):
    """One stream's layer ``layer`` for its units lo..hi-1: their gate rows, then their cells.

    token: the stream's input id (layer 0); x (H,) the layer below's output (other layers);
    h, c, h_out, c_out (H,) this layer's state in and out (c unused for a GRU); gi, gh (G*H,) the
    pre-activations, of which only these units' rows are written. table (V, G*H) layer 0's input
    projection of every token with its bias ``b_in[0]`` folded in, or (V, E) embeddings when ``w_ih0``
    (G*H, E) has rows; w_ih (L-1, G*H, H); w_hh (L, G*H, H); b_in (L, G*H) the input bias (b_ih +
    b_hh for an LSTM, b_ih for a GRU); b_hh (L, G*H) a GRU's recurrent bias.
    """
    hidden = h.shape[0]
    for g in range(w_hh.shape[1] // hidden):
        a, b = g * hidden + lo, g * hidden + hi
        if layer == 0:  # the input projection, with its bias
            if w_ih0.shape[0] == 0:
                gi[a:b] = table[token, a:b]
            else:
                gi[a:b] = b_in[0, a:b]
                _matvec_add(w_ih0[a:b], table[token], gi[a:b])
        else:
            gi[a:b] = b_in[layer, a:b]
            _matvec_add(w_ih[layer - 1, a:b], x, gi[a:b])
        if cell == LSTM:
            _matvec_add(w_hh[layer, a:b], h, gi[a:b])
        else:
            gh[a:b] = b_hh[layer, a:b]
            _matvec_add(w_hh[layer, a:b], h, gh[a:b])
    if cell == LSTM:
        _lstm_cell(gi, c, h_out, c_out, lo, hi)
    else:
        _gru_cell(gi, gh, h, h_out, lo, hi)


def _run(tokens, draw, finish, logits, h, c, cell, table, w_ih0, w_ih, w_hh, b_in, b_hh, ln_w, ln_b, head_w,
         head_b, temperature, top_k, top_p, banned, uniforms, parts):
    """The one compiled entry: T rounds for N streams, state (h, c: (L, N, H)) and logits (N, V) in place.

    Each round t takes the tokens ``tokens[t]`` (N,), or when ``draw`` draws them into ``tokens[t]``
    from ``logits`` with ``uniforms[t]`` (see ``draw_rows``), then steps every stream with them,
    except after the last round when ``finish``. The output layer runs only where its logits are
    used: in the last round, or in every round when drawing. So: a prime is ``draw=False``
    (T, 1); one step is ``draw=False`` (1, N); generation is ``draw=True``; one draw alone is
    ``draw=True, finish=True`` (1, N). Returns False, at once, if a row of logits is not finite.

    Each layer's units are cut into ``parts`` runs of whole rows (starts at multiples of 4, so
    every row's sum is computed as in one part); ``run_threads`` computes the parts in parallel
    threads, ``run`` one after the other, with the same results. ln_w, ln_b (L, H), or no rows for
    no layer norm; head_w (V, H), head_b (V,); the rest as in ``_units``.
    """
    n_layers, n_streams, hidden = h.shape
    gates = w_hh.shape[1]
    gi = np.empty(gates, np.float32)
    gh = np.empty(gates, np.float32)
    x = np.empty(hidden, np.float32)
    h2, c2 = np.empty_like(h), np.empty_like(c)
    per_part = ((hidden + parts - 1) // parts + 3) // 4 * 4
    rounds = tokens.shape[0]
    for t in range(rounds):
        if draw:
            draw_rows(logits, temperature, top_k, top_p, banned, uniforms[t], tokens[t])
            for s in range(n_streams):
                if tokens[t, s] < 0:
                    return False  # non-finite logits: the caller raises
        if finish and t == rounds - 1:
            break
        head = draw or t == rounds - 1
        for s in range(n_streams):
            for layer in range(n_layers):
                for part in prange(parts):
                    lo = min(part * per_part, hidden)
                    hi = min(lo + per_part, hidden)
                    _units(layer, lo, hi, tokens[t, s], x, h[layer, s], c[layer, s], h2[layer, s], c2[layer, s],
                           gi, gh, cell, table, w_ih0, w_ih, w_hh, b_in, b_hh)
                if ln_w.shape[0]:
                    _layer_norm(h2[layer, s], ln_w[layer], ln_b[layer], x)
                else:
                    x[:] = h2[layer, s]
            if head:
                logits[s] = head_b
                _matvec_add(head_w, x, logits[s])
        h[:] = h2
        if cell == LSTM:  # a GRU's c is its h
            c[:] = c2
    return True


def _named(function, name):
    """A copy of ``function`` under another name: numba caches compiled code by the function's name,
    not by its compile options, so each dispatcher of ``_run`` needs a name of its own."""
    copy = types.FunctionType(function.__code__.replace(co_name=name, co_qualname=name), function.__globals__, name)
    copy.__qualname__ = name
    copy.__doc__ = function.__doc__
    return copy


run = njit(**_FLAGS)(_named(_run, "run"))
run_threads = njit(parallel=True, **_FLAGS)(_named(_run, "run_threads"))


@njit(**_EXACT)
def _order_descending(x, order):
    """Fill ``order`` with the indices of ``x`` by decreasing value, ties by increasing index (heapsort;
    numpy's sorts take seconds to compile)."""
    n = x.shape[0]
    for i in range(n):
        order[i] = i
    # a min-heap on (value, -index): the root is the element that belongs last
    for start in range(n // 2 - 1, -1, -1):
        _sift(x, order, start, n)
    for end in range(n - 1, 0, -1):
        order[0], order[end] = order[end], order[0]
        _sift(x, order, 0, end)


@njit(**_EXACT)
def _later(x, a, b):
    """Whether index ``a`` comes after index ``b`` in decreasing-value, increasing-index order."""
    return x[a] < x[b] or (x[a] == x[b] and a > b)


@njit(**_EXACT)
def _sift(x, order, root, end):
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and _later(x, order[child + 1], order[child]):
            child += 1
        if _later(x, order[child], order[root]):
            order[root], order[child] = order[child], order[root]
            root = child
        else:
            return


@njit(**_EXACT)
def draw_rows(logits, temperature, top_k, top_p, banned, uniforms, out):
    """Draw one token per row of ``logits`` (N, V); see ``charpoet.sampling.filtered_weights``.

    The same arithmetic as the numpy reference, row by row in float64 (no fast-math, so the
    two agree): banned ids removed (unless that removes all), temperature 0 = argmax, else
    p ~ exp((logit - max) / T) restricted to top-k and top-p, and the token where the
    cumulative sum first exceeds ``uniforms[row]`` x total; -1 for a row with NaN or +inf.
    """
    n_rows, vocab = logits.shape
    x = np.empty(vocab, np.float64)
    p = np.empty(vocab, np.float64)
    order = np.empty(vocab, np.int64)
    allowed = 0
    for v in range(vocab):
        if not banned[v]:
            allowed += 1
    for row in range(n_rows):
        finite = True
        for v in range(vocab):
            x[v] = -np.inf if (banned[v] and allowed > 0) else np.float64(logits[row, v])
            finite = finite and not (np.isnan(x[v]) or x[v] == np.inf)
        best = 0
        for v in range(vocab):
            if x[v] > x[best]:
                best = v
        if not finite or x[best] == -np.inf:
            out[row] = -1  # NaN or infinite logits: no token
            continue
        if temperature == 0.0:
            out[row] = best
            continue
        top = x[best]
        for v in range(vocab):
            x[v] = (x[v] - top) / temperature  # <= 0; -inf where banned
        if (0 < top_k < vocab) or top_p < 1.0:
            _order_descending(x, order)
        if 0 < top_k < vocab:
            kth = x[order[top_k - 1]]
            for v in range(vocab):
                if x[v] < kth:
                    x[v] = -np.inf
        for v in range(vocab):
            p[v] = np.exp(x[v])
        if top_p < 1.0:  # ``order`` is still right: top-k only lowered values already below the k-th
            total = 0.0
            for v in range(vocab):
                total += p[v]
            before = 0.0
            for rank in range(vocab):
                v = order[rank]
                share = p[v] / total
                if before >= top_p:
                    p[v] = 0.0
                before += share
        total = 0.0
        for v in range(vocab):
            total += p[v]
        target = uniforms[row] * total
        running = 0.0
        chosen = -1
        for v in range(vocab):
            if p[v] > 0.0:
                running += p[v]
                chosen = v  # the last possible token, should rounding leave the target unreached
                if running > target:
                    break
        out[row] = chosen
