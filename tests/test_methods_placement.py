"""Where the newer methods act, checked against their official formulas written out by hand
(AdaptFormer, Houlsby, Convpass, RepAdapter, FacT, DiffFit; tiny ViT, random weights, CPU)."""
import pytest
import timm
import torch

from methods import METHODS, method_config


def vit(mlp_ratio=2.0, reg_tokens=0, seed=0):
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=8,
                             embed_dim=32, depth=2, num_heads=2, mlp_ratio=mlp_ratio, reg_tokens=reg_tokens).eval()


def jitter(model, scale=0.1):
    """Move every trainable parameter off its init so zero-initialised branches do something."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * scale)
    return model


def block_io(model, x):
    """(input, output) of the first block."""
    seen = {}
    h = model.blocks[0].register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    model(x)
    h.remove()
    return seen["x"], seen["y"]


def test_adaptformer_reads_the_pre_norm_input_in_parallel_with_the_mlp():
    model = jitter(METHODS["adaptformer"].apply(vit(), method_config("adaptformer", {}))).eval()
    b = model.blocks[0]
    x, y = block_io(model, torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        h = x + b.attn(b.norm1(x))
        branch = b.mlp.adaptformer
        a = 0.1 * branch.up(torch.relu(branch.down(h)))  # official: s * up(relu(down(x))), x before norm2
        want = h + b.mlp.fc2(b.mlp.act(b.mlp.fc1(b.norm2(h)))) + a
    torch.testing.assert_close(y, want, atol=1e-5, rtol=0)


def test_houlsby_adapts_both_sublayer_outputs():
    model = jitter(METHODS["adapter_houlsby"].apply(vit(), method_config("adapter_houlsby", {}))).eval()
    b = model.blocks[0]
    x, y = block_io(model, torch.randn(2, 3, 32, 32))

    def adapt(ad, t):
        return t + 0.1 * ad.up(torch.relu(ad.down(t)))

    with torch.no_grad():
        h = x + adapt(b.attn.houlsby, b.attn.proj(_attention(b.attn, b.norm1(x))))  # the hook-free attention
        want = h + adapt(b.mlp.houlsby, b.mlp.fc2(b.mlp.act(b.mlp.fc1(b.norm2(h)))))
    torch.testing.assert_close(y, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("reg_tokens", [0, 4])
def test_convpass_convolves_the_patch_grid_and_each_prefix_token_alone(reg_tokens):
    model = METHODS["convpass"].apply(vit(reg_tokens=reg_tokens), method_config("convpass", {}))
    cp = jitter(model).blocks[0].attn.convpass.eval()
    assert cp.prefix == 1 + reg_tokens and cp.grid == (4, 4)
    t = torch.randn(2, cp.prefix + 16, 32)
    with torch.no_grad():
        d = cp.act(cp.down(t))
        grid = d[:, cp.prefix:].reshape(2, 4, 4, 8).permute(0, 3, 1, 2)
        conv = torch.nn.functional.conv2d(grid, cp.conv.weight, cp.conv.bias, padding=1).permute(0, 2, 3, 1)
        centre = d[:, :cp.prefix] @ cp.conv.weight[:, :, 1, 1].t() + cp.conv.bias  # a 1x1 map: only the centre tap
        want = 10.0 * cp.up(cp.act(torch.cat([centre, conv.reshape(2, 16, 8)], 1)))
    torch.testing.assert_close(cp(t), want, atol=1e-5, rtol=0)
    fresh = METHODS["convpass"].apply(vit(), method_config("convpass", {})).blocks[0].attn.convpass
    assert torch.equal(fresh.conv.weight[:, :, 1, 1], torch.eye(8)) and fresh.conv.weight[:, :, 0].abs().sum() == 0


def test_repadapter_is_the_affine_map_it_folds():
    model = jitter(METHODS["repadapter"].apply(vit(), method_config("repadapter", {"groups": 2}))).eval()
    ad = model.blocks[0].norm1.repadapter
    m, c = ad.affine()
    n = torch.randn(3, 7, 32)
    torch.testing.assert_close(ad(n), n @ m.t() + c, atol=1e-5, rtol=0)
    # the grouped B (2 groups): output channels 0-15 read bottleneck channels 0-3 only, 16-31 read 4-7
    with torch.no_grad():
        hot = torch.zeros(1, 8, 1)
        hot[0, 1] = 1.0
        out = ad.conv_B(hot)[0, :, 0] - ad.conv_B.bias
    assert out[:16].abs().sum() > 0 and out[16:].abs().sum() == 0
    with pytest.raises(ValueError, match="method.groups=3 must divide"):
        METHODS["repadapter"].apply(vit(), method_config("repadapter", {"groups": 3}))


@pytest.mark.parametrize("kind", ["tt", "tk"])
def test_fact_updates_follow_the_official_reshapes(kind):
    """The official code's fc1/fc2 updates at m = 4 (ViT-B's ratio), written out with its reshapes."""
    from methods._fact import FacT

    torch.manual_seed(0)
    dim, r, m = 12, 3, 4
    f = FacT(dim, r, m, depth=2, scale=0.5, kind=kind).eval()
    torch.nn.init.normal_(f.V.weight)
    x, hid = torch.randn(2, 5, dim), torch.randn(2, 5, m * dim)
    with torch.no_grad():
        u, v = f.U, f.V
        if kind == "tk":
            slab = f.C @ f.P[:, 12:24]  # block 1: columns 12..23, attention 4 then MLP 8
            q = slab[:, :, 0]
            fc1 = slab[:, :, 4:8].reshape(r, 4 * r)
            fc2 = slab[:, :, 8:].reshape(r, 4 * r)
            want_q = v(u(x) @ q)
            want_fc1 = v((u(x) @ fc1).reshape(2, 5, 4, r)).reshape(2, 5, 4 * dim)
            want_fc2 = v(u(hid.reshape(2, 5, 4, dim)).reshape(2, 5, 4 * r) @ fc2.t())
        else:
            c = f.cores[1]
            want_q = v(c["qkv"][0](u(x)))
            want_fc1 = v(c["fc1"](u(x)).reshape(2, 5, 4, r)).reshape(2, 5, 4 * dim)
            want_fc2 = v(c["fc2"](u(hid.reshape(2, 5, 4, dim)).reshape(2, 5, 4 * r)))
        torch.testing.assert_close(f.delta(1, "qkv", x)[..., :dim], 0.5 * want_q, atol=1e-5, rtol=0)
        torch.testing.assert_close(f.delta(1, "fc1", x), 0.5 * want_fc1, atol=1e-5, rtol=0)
        torch.testing.assert_close(f.delta(1, "fc2", hid), 0.5 * want_fc2, atol=1e-5, rtol=0)
        for site, inp in (("qkv", x), ("proj", x), ("fc1", x), ("fc2", hid)):  # the dense update merge adds
            torch.testing.assert_close(inp @ f.update(1, site).t(), f.delta(1, site, inp), atol=1e-5, rtol=0)


def test_difffit_scales_each_branch():
    model = METHODS["difffit"].apply(vit(), method_config("difffit", {}))
    b = model.blocks[0]
    with torch.no_grad():
        b.attn.difffit.gamma.uniform_(0.5, 1.5)
        b.mlp.difffit.gamma.uniform_(0.5, 1.5)
    x, y = block_io(model.eval(), torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        h = x + b.attn.difffit.gamma * b.attn.proj(_attention(b.attn, b.norm1(x)))
        want = h + b.mlp.difffit.gamma * b.mlp.fc2(b.mlp.act(b.mlp.fc1(b.norm2(h))))
    torch.testing.assert_close(y, want, atol=1e-5, rtol=0)


def _attention(attn, x):
    """timm's Attention before its output projection."""
    bsz, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(bsz, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    w = (q @ k.transpose(-2, -1) * attn.scale).softmax(-1)
    return (w @ v).transpose(1, 2).reshape(bsz, n, c)


@pytest.mark.parametrize("name,arg", [("adaptformer", "bottleneck"), ("convpass", "bottleneck"), ("fact_tt", "rank"),
                                      ("repadapter", "groups")])
def test_arguments_out_of_range_are_one_line_errors(name, arg):
    with pytest.raises(ValueError, match=f"method.{arg}.*must be > 0"):
        method_config(name, {arg: 0})
    with pytest.raises(ValueError, match="method.scale.*must be >= 0"):
        method_config(name, {"scale": -1.0})
