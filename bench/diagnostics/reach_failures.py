"""Why does BC fail on reach? Per episode: min distance to target / to nearest distractor, closest ball."""
import sys, numpy as np, torch
from robot_si.envs import make_env
from robot_si.collect.rollout import load_policy_from_path
from robot_si.policies import observations_to_batch
torch.set_num_threads(1)
path, task, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
policy = load_policy_from_path(path); policy.eval()
stats = []
for ep in range(n):
    env = make_env(task, image_size=64, instruction_split="heldout")
    obs, _ = env.reset(seed=10**6 + ep)
    sim = env.unwrapped
    policy.reset()
    mins = None; succ = False; traj = []
    for t in range(sim.max_episode_steps):
        with torch.no_grad():
            a = policy.select_action(observations_to_batch([obs]))[0].cpu().numpy()
        obs, r, term, trunc, info = env.step(a)
        ee = sim.ee_position(); traj.append(ee.copy())
        if task == "reach":
            d = [np.linalg.norm(ee - sim.body_position(f"ball{i}")) for i in range(3)]
            mins = d if mins is None else np.minimum(mins, d)
        if term or trunc:
            succ = info["is_success"]; break
    if task == "reach":
        closest = int(np.argmin(mins))
        print(f"ep {ep}: succ={succ} steps={t+1} min_d_target={mins[0]:.3f} min_d_other={min(mins[1:]):.3f} closest={'target' if closest==0 else 'distractor'} final_z={traj[-1][2]:.3f}")
        stats.append((succ, closest == 0, mins[0]))
    env.close()
s = np.array(stats, dtype=float)
print("success", s[:,0].mean(), "closest-is-target", s[:,1].mean(), "median min_d_target", np.median(s[:,2]))
