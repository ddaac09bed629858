import pytest

torch = pytest.importorskip("torch")

from train.config import ModelConfig  # noqa: E402
from train.models import DiscriminatorNet, GeneratorNet, build_models, count_parameters  # noqa: E402


def test_parameter_counts_match_the_paper_defaults():
    g, d = build_models(ModelConfig())
    assert count_parameters(g) == 3_576_704
    assert count_parameters(d) == 2_765_568


@pytest.mark.parametrize("nc", [1, 3])
def test_shapes(nc):
    cfg = ModelConfig(nz=16, ngf=8, ndf=8, nc=nc)
    g, d = build_models(cfg)
    x = g(torch.randn(5, 16))
    assert x.shape == (5, nc, 64, 64)
    assert x.abs().max() <= 1.0  # tanh output
    assert g(torch.randn(5, 16, 1, 1)).shape == (5, nc, 64, 64)
    assert d(x).shape == (5,)
    assert [f.shape[1:] for f in d.features(x)] == [(8, 32, 32), (16, 16, 16), (32, 8, 8), (64, 4, 4)]


def test_paper_architecture_no_bn_on_g_output_or_d_input():
    g, d = build_models(ModelConfig(ngf=8, ndf=8))
    assert isinstance(g.main[-1], torch.nn.Tanh) and isinstance(g.main[-2], torch.nn.ConvTranspose2d)
    assert isinstance(d.main[0], torch.nn.Conv2d) and isinstance(d.main[1], torch.nn.LeakyReLU)
    assert d.main[1].negative_slope == 0.2
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d, torch.nn.Linear))
                   for m in [*g.modules(), *d.modules()])


def test_init_statistics():
    torch.manual_seed(0)
    g, d = build_models(ModelConfig())
    for net in (g, d):
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                assert abs(m.weight.mean().item()) < 2e-3
                assert m.weight.std().item() == pytest.approx(0.02, rel=0.05)
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.weight.mean().item() == pytest.approx(1.0, abs=0.01)
                assert torch.all(m.bias == 0)


def _examples_generator(nz=100, ngf=64, nc=3):
    """pytorch/examples dcgan's netG layout, written out here as that script defines it."""
    nn = torch.nn
    main = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    holder = nn.Module()
    holder.main = main
    return holder


def _examples_discriminator(ndf=64, nc=3):
    nn = torch.nn
    lrelu = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
    main = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), lrelu(),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), lrelu(),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), lrelu(),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), lrelu(),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    holder = nn.Module()
    holder.main = main
    return holder


def test_loads_pytorch_examples_state_dicts(tmp_path):
    ref_g, ref_d = _examples_generator(nz=16, ngf=8), _examples_discriminator(ndf=8)
    torch.save(ref_g.state_dict(), tmp_path / "netG_epoch_0.pth")
    torch.save(ref_d.state_dict(), tmp_path / "netD_epoch_0.pth")
    cfg = ModelConfig(nz=16, ngf=8, ndf=8)
    g, d = GeneratorNet(cfg), DiscriminatorNet(cfg)
    g.load_state_dict(torch.load(tmp_path / "netG_epoch_0.pth", weights_only=True))
    d.load_state_dict(torch.load(tmp_path / "netD_epoch_0.pth", weights_only=True))
    g.eval(), ref_g.eval(), d.eval(), ref_d.eval()
    z = torch.randn(3, 16, 1, 1)
    torch.testing.assert_close(g(z), ref_g.main(z), rtol=0, atol=0)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(torch.sigmoid(d(x)), ref_d.main(x).flatten())


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="image_size"):
        ModelConfig(image_size=128)
    with pytest.raises(ValueError, match="latent"):
        ModelConfig(latent="cauchy")
    assert ModelConfig.from_dict({**ModelConfig().to_dict(), "extra": 1}) == ModelConfig()
