"""Minimal BC harness: pixel keypoints (FiLM by instruction) + state -> action; closed-loop eval on reach."""
import sys, numpy as np, torch, torch.nn.functional as F
from robot_si.data import EpisodeStore
from robot_si.envs import make_env
from robot_si.policies.modeling_compact_vla import SpatialKeypoints
from robot_si.policies.encoders import shared_text_encoder
torch.manual_seed(0); torch.set_num_threads(1)
store = EpisodeStore(sys.argv[1]); task = sys.argv[2]; steps = int(sys.argv[3]); use_state_vel = int(sys.argv[4])
enc = shared_text_encoder()
X, S, A, C = [], [], [], []
for m in store.episodes(task=task):
    ep = store.load_episode(m.episode_id)
    X.append(ep["observation.images.front"]); S.append(ep["observation.state"]); A.append(ep["action"])
    C += [m.instruction] * len(ep["action"])
X = torch.tensor(np.concatenate(X)).permute(0, 3, 1, 2).float() / 255; X = F.avg_pool2d(X, 2)
S = torch.tensor(np.concatenate(S)); A = torch.tensor(np.concatenate(A)); Ct = enc(C)
sidx = list(range(8)) if use_state_vel else [0, 1, 2, 3]
sm, ss = S.mean(0), S.std(0).clamp_min(1e-3); am, as_ = A.mean(0), A.std(0).clamp_min(1e-3)
print("frames", len(A))
class Net(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.head = SpatialKeypoints(3, 32, 32, 16, 64, 256); s.text = torch.nn.Sequential(torch.nn.Linear(384, 256), torch.nn.GELU())
        s.mlp = torch.nn.Sequential(torch.nn.Linear(32 + len(sidx), 256), torch.nn.GELU(), torch.nn.Linear(256, 256), torch.nn.GELU(), torch.nn.Linear(256, 4))
    def forward(s, x, st, c):
        return s.mlp(torch.cat([s.head(x.flatten(1), s.text(c)), ((st - sm) / ss)[:, sidx]], 1))
net = Net(); opt = torch.optim.AdamW(net.parameters(), 1e-3)
for step in range(steps):
    i = torch.randint(0, len(A), (64,))
    loss = F.l1_loss(net(X[i], S[i], Ct[i]), (A[i] - am) / as_); opt.zero_grad(); loss.backward(); opt.step()
print("final loss", loss.item())
succ = []
net.eval()
for ep in range(60):
    env = make_env(task, image_size=64, instruction_split="heldout"); obs, _ = env.reset(seed=10**6 + ep)
    c = enc([obs["task"]])
    for t in range(env.unwrapped.max_episode_steps):
        x = F.avg_pool2d(torch.tensor(obs["observation.images.front"]).permute(2, 0, 1)[None].float() / 255, 2)
        with torch.no_grad(): a = (net(x, torch.tensor(obs["observation.state"])[None], c) * as_ + am).clamp(-1, 1)[0].numpy()
        obs, r, term, trunc, info = env.step(a)
        if term or trunc: break
    succ.append(info["is_success"]); env.close()
print(f"{task} steps={steps} vel={use_state_vel} success {np.mean(succ):.2f} (n={len(succ)})")
