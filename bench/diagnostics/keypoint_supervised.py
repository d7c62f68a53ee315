"""Can SpatialKeypoints (pixel map, FiLM by instruction) learn to locate the instructed ball when supervised?"""
import sys, time, numpy as np, torch, torch.nn.functional as F
from robot_si.envs import make_env
from robot_si.policies.modeling_compact_vla import SpatialKeypoints
from robot_si.policies.encoders import shared_text_encoder
torch.manual_seed(0); torch.set_num_threads(1)
enc = shared_text_encoder()
def data(seeds, split):
    X, C, Y = [], [], []
    for s in seeds:
        env = make_env("reach", image_size=64, instruction_split=split); obs, _ = env.reset(seed=s); sim = env.unwrapped
        X.append(obs["observation.images.front"]); C.append(enc([obs["task"]])[0]); Y.append(sim.body_position("ball0")[:2]); env.close()
    X = torch.tensor(np.stack(X)).permute(0, 3, 1, 2).float() / 255
    X = F.avg_pool2d(X, 2)
    return X, torch.stack(C), torch.tensor(np.array(Y)).float()
ntr = int(sys.argv[1]); temp0 = float(sys.argv[2])
Xtr, Ctr, Ytr = data(range(ntr), "train"); Xte, Cte, Yte = data(range(10**6, 10**6 + 200), "heldout")
head = SpatialKeypoints(3, 32, 32, 16, 64, 256)
with torch.no_grad(): head.log_temperature.fill_(np.log(temp0))
textp = torch.nn.Sequential(torch.nn.Linear(384, 256), torch.nn.GELU())
out = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.GELU(), torch.nn.Linear(128, 2))
params = [*head.parameters(), *textp.parameters(), *out.parameters()]
opt = torch.optim.AdamW(params, 1e-3)
m, s = Ytr.mean(0), Ytr.std(0)
for step in range(1500):
    idx = torch.randint(0, ntr, (64,))
    pred = out(head(Xtr[idx].flatten(1), textp(Ctr[idx])))
    loss = F.mse_loss(pred, (Ytr[idx] - m) / s); opt.zero_grad(); loss.backward(); opt.step()
    if step % 500 == 499 or step == 1499:
        with torch.no_grad():
            p = out(head(Xte.flatten(1), textp(Cte))) * s + m
            err = (p - Yte).norm(dim=1)
        print(f"n={ntr} T0={temp0} step {step+1} train loss {loss.item():.3f} test median err {err.median():.3f} m, <4cm {(err<0.04).float().mean():.2f}, temp {head.log_temperature.exp().item():.3f}")
