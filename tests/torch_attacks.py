"""The released code's attacks (main_attack.py `evaluate_adv`), restated in PyTorch for live checks.

Inputs and state are in the original's spaces: frames ImageNet-normalised NCHW, audio (B, 1, L).
`net(frame, audio) -> logits`. Written from the original loop bodies, flaws included (FGSM audio not
clamped; MIM batch-global L1 norm and its projection built from the current iterate).
"""
import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _inv(z):
    return z * torch.tensor(STD, dtype=z.dtype).view(1, 3, 1, 1) + torch.tensor(MEAN, dtype=z.dtype).view(1, 3, 1, 1)


def _norm(p):
    return (p - torch.tensor(MEAN, dtype=p.dtype).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=p.dtype).view(1, 3, 1, 1)


def _grads(net, frame, audio, gt):
    frame = frame.clone().detach().requires_grad_(True)
    audio = audio.clone().detach().requires_grad_(True)
    err = F.cross_entropy(net(frame, audio), gt)
    err.backward()
    return frame.grad.detach(), audio.grad.detach()


def fgsm(net, frame, audio, gt, eps_v, eps_a):
    g_v, g_a = _grads(net, frame, audio, gt)
    frame_adv = _norm(torch.clamp(_inv(frame + eps_v * torch.sign(g_v)), 0, 1))
    audio_adv = audio + eps_a * torch.sign(g_a)
    return frame_adv, audio_adv


def pgd(net, frame, audio, gt, eps_v, eps_a, steps=10):
    alpha_v, alpha_a = eps_v / 8, eps_a / 8
    frame_adv, audio_adv = frame.clone(), audio.clone()
    for _ in range(steps):
        g_v, g_a = _grads(net, frame_adv, audio_adv, gt)
        frame_adv = frame_adv + alpha_v * torch.sign(g_v)
        frame_adv = frame + torch.clamp(frame_adv - frame, min=-eps_v, max=eps_v)
        frame_adv = _norm(torch.clamp(_inv(frame_adv), 0, 1))
        audio_adv = audio_adv + alpha_a * torch.sign(g_a)
        audio_adv = torch.clamp(audio + torch.clamp(audio_adv - audio, min=-eps_a, max=eps_a), -1, 1)
    return frame_adv, audio_adv


def _buggy_projection(x, eps, lower):
    a = torch.clamp(x - eps, min=lower)
    b = (x >= a).to(x.dtype) * x + (a > x).to(x.dtype) * a
    return (b > x + eps).to(x.dtype) * (x + eps) + (x + eps >= b).to(x.dtype) * b


def mim_original(net, frame, audio, gt, eps_v, eps_a, steps=10):
    alpha_v, alpha_a = eps_v / 8, eps_a / 8
    frame_adv, audio_adv = frame.clone(), audio.clone()
    mom_v, mom_a = torch.zeros_like(frame), torch.zeros_like(audio)
    for _ in range(steps):
        g_v, g_a = _grads(net, frame_adv, audio_adv, gt)
        g_v = g_v / torch.norm(g_v, p=1) + mom_v * 1.0
        mom_v = g_v
        frame_adv = _buggy_projection(frame_adv + alpha_v * torch.sign(g_v), eps_v, 0)
        frame_adv = _norm(torch.clamp(_inv(frame_adv), 0, 1))
        g_a = g_a / torch.norm(g_a, p=1) + mom_a * 1.0
        mom_a = g_a
        audio_adv = _buggy_projection(audio_adv + alpha_a * torch.sign(g_a), eps_a, -1)
        audio_adv = torch.clamp(audio_adv, -1, 1)
    return frame_adv, audio_adv


def mim_standard(net, frame, audio, gt, eps_v, eps_a, steps=10):
    """Dong et al. with per-example L1 norms and the eps-ball projection (the correct MIM)."""
    alpha_v, alpha_a = eps_v / 8, eps_a / 8
    frame_adv, audio_adv = frame.clone(), audio.clone()
    mom_v, mom_a = torch.zeros_like(frame), torch.zeros_like(audio)
    for _ in range(steps):
        g_v, g_a = _grads(net, frame_adv, audio_adv, gt)
        mom_v = g_v / g_v.abs().sum(dim=(1, 2, 3), keepdim=True) + mom_v
        frame_adv = frame + torch.clamp(frame_adv + alpha_v * torch.sign(mom_v) - frame, -eps_v, eps_v)
        frame_adv = _norm(torch.clamp(_inv(frame_adv), 0, 1))
        mom_a = g_a / g_a.abs().sum(dim=(1, 2), keepdim=True) + mom_a
        audio_adv = audio + torch.clamp(audio_adv + alpha_a * torch.sign(mom_a) - audio, -eps_a, eps_a)
        audio_adv = torch.clamp(audio_adv, -1, 1)
    return frame_adv, audio_adv
