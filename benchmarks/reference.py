"""A plain DiT written the way the original DiT code reads: eager fp32, attention as explicit matrix products.

It is the yardstick for `flowmatch.dit.DiT` in the training benchmark. Same architecture, same parameter count, same FLOPs;
only the way it is written differs (no fused attention kernel, separate q, k and v projections)."""
import math
import torch
import torch.nn as nn


def _grid_embedding(dim, side):
    "Fixed sine-cosine position of every patch in a side x side grid, (side*side, dim)."
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64), indexing='ij')
    parts = []
    for coord in (cols.flatten(), rows.flatten()):
        angles = coord[:, None] * freqs[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


class RefAttention(nn.Module):
    "Self-attention with its own q, k, v projections and the softmax written out."
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        B, N, D = x.shape
        split = lambda z: z.view(B, N, self.heads, D // self.heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        weights = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(B, N, D))


class RefBlock(nn.Module):
    "Pre-norm transformer block whose norms are shifted, scaled and gated by the conditioning vector (adaLN-Zero)."
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm_a = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        self.norm_m = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate='tanh'), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight); nn.init.zeros_(self.ada[1].bias)

    def forward(self, x, c):
        mods = self.ada(c)[:, None].chunk(6, dim=-1)
        h = self.norm_a(x) * (1 + mods[1]) + mods[0]
        x = x + mods[2] * self.attn(h)
        h = self.norm_m(x) * (1 + mods[4]) + mods[3]
        return x + mods[5] * self.mlp(h)


class ReferenceDiT(nn.Module):
    "Velocity model v(x, t) over latents (B, C, H, W): patch tokens, time MLP, adaLN-Zero blocks, linear head."
    def __init__(self, input_size, patch_size, in_channels, hidden_size, depth, num_heads, mlp_ratio=4.0, num_classes=0, **unused):
        super().__init__()
        self.p, self.c, self.side = patch_size, in_channels, input_size // patch_size
        self.patch = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer('pos', _grid_embedding(hidden_size, self.side)[None])
        self.time_mlp = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.label = nn.Embedding(num_classes + 1, hidden_size) if num_classes else None
        self.blocks = nn.ModuleList(RefBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.head = nn.Linear(hidden_size, patch_size * patch_size * in_channels)
        for m in (self.final_ada[1], self.head): nn.init.zeros_(m.weight); nn.init.zeros_(m.bias)

    def time_features(self, t, dim=256):
        freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, device=t.device, dtype=torch.float32) / (dim // 2))
        angles = t.float()[:, None] * freqs[None]
        return torch.cat([angles.cos(), angles.sin()], dim=-1)

    def forward(self, x, t, y=None):
        B = x.shape[0]
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        c = self.time_mlp(self.time_features(t))
        if self.label is not None:
            c = c + self.label(torch.full((B,), self.label.num_embeddings - 1, device=x.device) if y is None else y)
        for block in self.blocks: tokens = block(tokens, c)
        shift, scale = self.final_ada(c)[:, None].chunk(2, dim=-1)
        out = self.head(self.final_norm(tokens) * (1 + scale) + shift)   # (B, N, p*p*C), each patch laid out (row, col, channel)
        out = out.view(B, self.side, self.side, self.p, self.p, self.c)
        return out.permute(0, 5, 1, 3, 2, 4).reshape(B, self.c, self.side * self.p, self.side * self.p)
