"""Do the keypoints track the instructed ball? R^2 of keypoint xy ~ poly2(ball xy), target vs distractor."""
import sys, numpy as np, torch
from robot_si.envs import make_env
from robot_si.collect.rollout import load_policy_from_path
from robot_si.policies import observations_to_batch
torch.set_num_threads(1)
policy = load_policy_from_path(sys.argv[1]); policy.eval()
outs = {}
for i, h in enumerate(policy.keypoint_heads):
    h.register_forward_hook(lambda m, inp, out, i=i: outs.__setitem__(i, out.detach().numpy().copy()))
K = {i: [] for i in range(len(policy.keypoint_heads))}; T = []; D = []
for ep in range(150):
    env = make_env("reach", image_size=64, instruction_split="heldout")
    obs, _ = env.reset(seed=10**6 + ep); sim = env.unwrapped
    with torch.no_grad(): policy.predict_action_chunk(observations_to_batch([obs]))
    for i in K: K[i].append(outs[i][0])
    T.append(sim.body_position("ball0")[:2]); D.append(sim.body_position("ball1")[:2]); env.close()
T = np.array(T); D = np.array(D)
def feats(P): return np.c_[np.ones(len(P)), P, P**2, P[:, :1]*P[:, 1:]]
def r2(X, y):
    tr, te = slice(0, 100), slice(100, None)
    w, *_ = np.linalg.lstsq(X[tr], y[tr], rcond=None); pred = X[te] @ w
    return 1 - ((y[te]-pred)**2).sum(0) / ((y[te]-y[te].mean(0))**2).sum(0)
for i in K:
    k = np.array(K[i]).reshape(len(T), -1, 2)
    rt = [r2(feats(T), k[:, j]).mean() for j in range(k.shape[1])]
    rd = [r2(feats(D), k[:, j]).mean() for j in range(k.shape[1])]
    # inverse: target xy decodable from ALL keypoints of this head?
    inv_t = r2(np.c_[np.ones(len(T)), k.reshape(len(T), -1)], T).mean()
    inv_d = r2(np.c_[np.ones(len(T)), k.reshape(len(T), -1)], D).mean()
    print(f"head {i}: best kp R2 target {max(rt):.2f} distractor {max(rd):.2f}; decode target from head {inv_t:.2f}, distractor {inv_d:.2f}")
