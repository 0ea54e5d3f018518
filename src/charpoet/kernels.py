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

import numpy as np
from numba import njit

_FLAGS = dict(cache=True, nogil=True, fastmath=True, error_model="numpy")
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
def _sigmoid(x):
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


@njit(**_FLAGS)
def _lstm_cell(gates, c, h_out, c_out):
    """One stream's LSTM cell from its pre-activations ``gates`` (4H,) = i f g o; c, h_out, c_out (H,)."""
    hidden = c.shape[0]
    for j in range(hidden):
        i_gate = _sigmoid(gates[j])
        f_gate = _sigmoid(gates[hidden + j])
        g_gate = np.tanh(gates[2 * hidden + j])
        o_gate = _sigmoid(gates[3 * hidden + j])
        cj = f_gate * c[j] + i_gate * g_gate
        c_out[j] = cj
        h_out[j] = o_gate * np.tanh(cj)


@njit(**_FLAGS)
def _gru_cell(gi, gh, h, h_out):
    """One stream's GRU cell from input and recurrent pre-activations gi, gh (3H,) = r z n; h, h_out (H,)."""
    hidden = h.shape[0]
    for j in range(hidden):
        r_gate = _sigmoid(gi[j] + gh[j])
        z_gate = _sigmoid(gi[hidden + j] + gh[hidden + j])
        n_gate = np.tanh(gi[2 * hidden + j] + r_gate * gh[2 * hidden + j])
        h_out[j] = (np.float32(1.0) - z_gate) * n_gate + z_gate * h[j]


@njit(**_FLAGS)
def cells(cell, gi, gh, h, c, h_out, c_out, ln_w, ln_b, x):
    """The cells of one layer for many streams, after the matrix products (``Stepper``'s batched path):
    gi (N, G*H) input pre-activations (for an LSTM including the recurrent product), gh (N, G*H)
    a GRU's recurrent ones; h, c, h_out, c_out (N, H); x (N, H) the layer's output (layer-normed
    when ``ln_w`` (H,) has entries)."""
    for s in range(gi.shape[0]):
        if cell == LSTM:
            _lstm_cell(gi[s], c[s], h_out[s], c_out[s])
        else:
            _gru_cell(gi[s], gh[s], h[s], h_out[s])
        if ln_w.shape[0]:
            _layer_norm(h_out[s], ln_w, ln_b, x[s])
        else:
            x[s] = h_out[s]


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
def step(tokens, h, c, h_out, c_out, cell, table, w_ih0, w_ih, w_hh, b_in, b_hh, ln_w, ln_b, head_w, head_b,
         logits):
    """Advance every stream by one token; write the new state and, if ``logits`` has rows, the logits.

    tokens (N,) int64; h, c, h_out, c_out (L, N, H) (c unused for a GRU); table (V, G*H) layer 0's
    input projection of every token with its bias ``b_in[0]`` folded in, or (V, E) embeddings when
    ``w_ih0`` (G*H, E) has rows; w_ih (L-1, G*H, H); w_hh (L, G*H, H); b_in (L, G*H) the input
    bias (b_ih + b_hh for an LSTM, b_ih for a GRU); b_hh (L, G*H) a GRU's recurrent bias;
    ln_w, ln_b (L, H), or no rows for no layer norm; head_w (V, H), head_b (V,);
    logits (N, V) or (0, V) to skip the output layer (feeding a prime).
    """
    n_layers, n_streams, hidden = h.shape
    gates = w_hh.shape[1]
    gi = np.empty(gates, np.float32)
    gh = np.empty(gates, np.float32)
    x = np.empty(hidden, np.float32)
    for s in range(n_streams):
        for layer in range(n_layers):
            # input projection gi (plus, for an LSTM, both biases)
            if layer == 0:
                if w_ih0.shape[0] == 0:
                    gi[:] = table[tokens[s]]
                else:
                    gi[:] = b_in[0]
                    _matvec_add(w_ih0, table[tokens[s]], gi)
            else:
                gi[:] = b_in[layer]
                _matvec_add(w_ih[layer - 1], x, gi)
            hp = h[layer, s]
            if cell == LSTM:
                _matvec_add(w_hh[layer], hp, gi)
                _lstm_cell(gi, c[layer, s], h_out[layer, s], c_out[layer, s])
            else:
                gh[:] = b_hh[layer]
                _matvec_add(w_hh[layer], hp, gh)
                _gru_cell(gi, gh, hp, h_out[layer, s])
            if ln_w.shape[0]:
                _layer_norm(h_out[layer, s], ln_w[layer], ln_b[layer], x)
            else:
                x[:] = h_out[layer, s]
        if logits.shape[0]:
            logits[s] = head_b
            _matvec_add(head_w, x, logits[s])


@njit(**_FLAGS)
def feed(tokens, h, c, cell, table, w_ih0, w_ih, w_hh, b_in, b_hh, ln_w, ln_b, head_w, head_b, logits):
    """Run one stream (h, c of shape (L, 1, H), updated in place) through ``tokens`` (T,);
    the logits (1, V) of the last token are written to ``logits``."""
    h2, c2 = np.empty_like(h), np.empty_like(c)
    no_logits = logits[:0]
    for t in range(tokens.shape[0]):
        out = logits if t == tokens.shape[0] - 1 else no_logits
        step(tokens[t:t + 1], h, c, h2, c2, cell, table, w_ih0, w_ih, w_hh, b_in, b_hh, ln_w, ln_b,
             head_w, head_b, out)
        h[:] = h2
        if cell == LSTM:  # a GRU's c is its h
            c[:] = c2


@njit(cache=True, nogil=True, error_model="numpy")
def sample_rows(logits, temperature, top_k, top_p, banned, uniforms, out):
    """Draw one token per row of ``logits`` (N, V); see ``charpoet.sampling.filtered_probabilities``.

    The same arithmetic as the numpy reference, row by row in float64 (no fast-math, so the
    two agree): banned ids removed (unless that removes all), temperature 0 = argmax, else
    p ~ exp((logit - max) / T) restricted to top-k and top-p, and the token where the
    cumulative sum first exceeds ``uniforms[row]`` x total.
    """
    n_rows, vocab = logits.shape
    x = np.empty(vocab, np.float64)
    p = np.empty(vocab, np.float64)
    for row in range(n_rows):
        allowed = 0
        for v in range(vocab):
            if not banned[v]:
                allowed += 1
        for v in range(vocab):
            x[v] = -np.inf if (banned[v] and allowed > 0) else np.float64(logits[row, v])
        best = 0
        for v in range(vocab):
            if x[v] > x[best]:
                best = v
        if temperature == 0.0:
            out[row] = best
            continue
        top = x[best]
        for v in range(vocab):
            x[v] = (x[v] - top) / temperature  # <= 0; -inf where banned
        if 0 < top_k < vocab:
            kth = -np.sort(-x)[top_k - 1]
            for v in range(vocab):
                if x[v] < kth:
                    x[v] = -np.inf
        for v in range(vocab):
            p[v] = np.exp(x[v])
        if top_p < 1.0:
            order = np.argsort(-x, kind="mergesort")
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


@njit(**_FLAGS)
def decode(length, finish, logits, h, c, cell, table, w_ih0, w_ih, w_hh, b_in, b_hh, ln_w, ln_b, head_w,
           head_b, temperature, top_k, top_p, banned, uniforms, out):
    """``length`` rounds of: draw ``out[t]`` (N,) from ``logits`` (N, V) with ``uniforms[t]``, then step
    every stream with it (in place: logits, h, c), except after the last draw when ``finish``.

    The same as alternating ``sample_rows`` and ``step`` from Python, without leaving compiled code.
    """
    h2, c2 = np.empty_like(h), np.empty_like(c)
    for t in range(length):
        sample_rows(logits, temperature, top_k, top_p, banned, uniforms[t], out[t])
        if finish and t == length - 1:
            break
        step(out[t], h, c, h2, c2, cell, table, w_ih0, w_ih, w_hh, b_in, b_hh, ln_w, ln_b, head_w, head_b,
             logits)
        h[:] = h2
        if cell == LSTM:  # a GRU's c is its h
            c[:] = c2
