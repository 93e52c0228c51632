"""vitbatch on a real Slurm: this machine becomes a one-node cluster (munged, slurmctld and slurmd
from Debian's slurm-wlm, a generated slurm.conf, all state in a temp directory, stopped at the
end); scripts/slurm/submit.sh submits a job array of 4 classify tasks over ~300 photos and a
dependent merge; one array element is killed mid-run (scancel --signal=KILL) and requeued; the
merged predictions must equal a single-process run byte for byte.

Exit 77 (ctest SKIP) with the reason where a cluster cannot be started here: not root, the
packages missing, or the daemons failing to come up (their logs are printed)."""

import csv
import io
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from PIL import Image

import vitref

SKIP = 77
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPTS = os.path.join(ROOT, "scripts", "slurm")
TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "runuser")


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """munged + slurmctld + slurmd in the foreground, as children of this process."""

    def __init__(self, root):
        self.root = root
        self.procs = []
        self.env = dict(os.environ, SLURM_CONF=os.path.join(root, "slurm.conf"))

    def start(self):
        r = self.root
        munge_dir, run_dir = os.path.join(r, "munge"), os.path.join(r, "run")
        for d in (munge_dir, run_dir, os.path.join(r, "state"), os.path.join(r, "spool"), os.path.join(r, "log")):
            os.makedirs(d)
        munge = pwd.getpwnam("munge")
        for d in (r, os.path.dirname(r)):  # munged (as munge) must reach its files through these
            os.chmod(d, 0o755)
        # munged insists on a private key and state directory, and a socket directory others can
        # enter; it runs as the munge user, as Debian's service does.
        key = os.path.join(munge_dir, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        for path in (munge_dir, key, run_dir):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        os.chmod(munge_dir, 0o700)
        os.chmod(run_dir, 0o755)
        self.socket = os.path.join(run_dir, "munge.socket")
        self.spawn("munged", ["runuser", "-u", "munge", "--", "munged", "-F", f"--key-file={key}",
                              f"--socket={self.socket}", f"--pid-file={run_dir}/munged.pid",
                              f"--log-file={munge_dir}/munged.log", f"--seed-file={munge_dir}/munged.seed"])
        self.wait_for(lambda: os.path.exists(self.socket), 10, "munged did not create its socket")
        host = socket.gethostname().split(".")[0]
        conf = f"""ClusterName=vitbatchtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={run_dir}/slurmctld.pid
SlurmdPidFile={run_dir}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.env["SLURM_CONF"], "w") as f:
            f.write(conf)
        self.spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", self.env["SLURM_CONF"]])
        self.spawn("slurmd", ["slurmd", "-D", "-f", self.env["SLURM_CONF"]])
        self.wait_for(lambda: self.run("sinfo", "-h", "-o", "%T", check=False).strip() == "idle", 30,
                      "the node did not become idle")

    def spawn(self, name, argv):
        log = open(os.path.join(self.root, f"{name}.out"), "w")
        self.procs.append((name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)))

    def wait_for(self, ready, seconds, what):
        end = time.time() + seconds
        while time.time() < end:
            for name, p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(what)

    def run(self, *argv, check=True):
        r = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: {r.stderr}")
        return r.stdout

    def state(self, job):
        out = self.run("scontrol", "show", "job", str(job), check=False)
        for word in out.split():
            if word.startswith("JobState="):
                return word.split("=", 1)[1]
        return "UNKNOWN"

    def logs(self):
        text = ""
        for path in ("munge/munged.log", "log/slurmctld.log", "log/slurmd.log", "slurmctld.out", "slurmd.out", "munged.out"):
            full = os.path.join(self.root, path)
            if os.path.exists(full):
                with open(full, errors="replace") as f:
                    text += f"--- {path}\n" + "".join(f.readlines()[-15:])
        return text

    def stop(self):
        if any(name == "slurmctld" and p.poll() is None for name, p in self.procs):
            self.run("scancel", "--user", "root", check=False)
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def make_photos(folder, count, seed=5):
    """~300 JPEGs cut from the shared photos (crops, flips, sizes), in three sub-folders, and one
    broken file, so the merge carries an error row too."""
    rng = random.Random(seed)
    sources = [Image.open(p).convert("RGB") for p in vitref.photos()[:8]]
    for i in range(count):
        img = sources[i % len(sources)]
        w, h = img.size
        cw, ch = rng.randint(w // 3, w), rng.randint(h // 3, h)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = img.crop((x, y, x + cw, y + ch)).resize((rng.randint(96, 200), rng.randint(96, 200)))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        sub = os.path.join(folder, "abc"[i % 3])
        os.makedirs(sub, exist_ok=True)
        crop.save(os.path.join(sub, f"img{i:04d}.jpg"), quality=90)
    with open(os.path.join(folder, "b", "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 cut short")


def writers_of(path):
    """Processes whose command line names `path` (pgrep -f, without procps)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if path.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def data_rows(path):
    if not os.path.exists(path):
        return 0
    with open(path, newline="") as f:
        return max(0, sum(1 for line in f if line.endswith("\n")) - 1)


def main():
    if os.geteuid() != 0:
        skip("not root: munged must run as the munge user and slurmd as root")
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        skip(f"not installed: {', '.join(missing)} (Debian: slurm-wlm munge)")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        skip("no munge user (Debian's munge package makes it)")

    tmp = tempfile.mkdtemp(prefix="vitbatch_slurm_")
    cluster = Cluster(os.path.join(tmp, "cluster"))
    try:
        try:
            cluster.start()
        except Exception as e:  # noqa: BLE001 - any failure to come up is the skip reason
            skip(f"a one-node Slurm cluster could not be started here: {e}\n{cluster.logs()}")
        run_test(cluster, tmp)
        print("ok: Slurm array of 4, one task killed and requeued, merged output equals the single run")
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run_test(cluster, tmp):
    photos = os.path.join(tmp, "photos")
    make_photos(photos, 300)
    model = vitref.MODEL_DIR
    common = ["--model", model, "--threads", "1", "--batch-size", "4", "--decode-threads", "1"]
    single = os.path.join(tmp, "single.csv")
    r = subprocess.run([vitref.VITBATCH, "classify", *common, "--progress", "never", "-o", single, photos],
                       capture_output=True, text=True, timeout=300, cwd=tmp)
    assert r.returncode == 1, r.stderr  # 1: the broken JPEG
    assert data_rows(single) == 301

    out = os.path.join(tmp, "out")
    env = dict(cluster.env, VITBATCH=vitref.VITBATCH)
    r = subprocess.run(["bash", os.path.join(SCRIPTS, "submit.sh"), "-n", "4", "-c", "1", out, *common, "--", photos],
                       capture_output=True, text=True, env=env, timeout=60, cwd=tmp)
    assert r.returncode == 0, r.stderr
    array, merge = r.stdout.split()
    victim = f"{array}_0"
    shard0 = os.path.join(out, "shard-0-of-4.csv")

    # Kill task 0 once it has written a few rows and is still running; then requeue it (and
    # lift the 2-minute hold Slurm puts on a requeued job).
    deadline = time.time() + 120
    while time.time() < deadline and not (cluster.state(victim) == "RUNNING" and data_rows(shard0) >= 4):
        time.sleep(0.02)
    assert cluster.state(victim) == "RUNNING", f"task 0 is {cluster.state(victim)} before it could be killed"
    cluster.run("scancel", "--signal=KILL", victim)
    deadline = time.time() + 30
    while time.time() < deadline and cluster.state(victim) in ("RUNNING", "COMPLETING"):
        time.sleep(0.1)
    # The controller can say CANCELLED a moment before slurmd has the process dead.
    while time.time() < deadline and writers_of(shard0):
        time.sleep(0.1)
    killed_state, rows_at_kill = cluster.state(victim), data_rows(shard0)
    with open(shard0, newline="") as f:  # the complete rows with an answer: what a resume keeps
        kept = sum(1 for row in csv.DictReader(io.StringIO("".join(l for l in f if l.endswith("\n")))) if not row["error"])
    assert killed_state in ("CANCELLED", "FAILED"), killed_state
    assert not os.path.exists(os.path.join(out, "shard-0-of-4.done"))
    cluster.run("scontrol", "requeue", victim)
    cluster.run("scontrol", "update", f"JobId={victim}", "StartTime=now")

    deadline = time.time() + 400
    while time.time() < deadline and cluster.state(merge) not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
        time.sleep(0.5)
    logs = ""
    for name in sorted(os.listdir(os.path.join(out, "logs"))):
        with open(os.path.join(out, "logs", name)) as f:
            logs += f"--- {name}\n{f.read()[-2000:]}"
    assert cluster.state(merge) == "COMPLETED", f"merge job is {cluster.state(merge)}\n{logs}\n{cluster.logs()}"
    shard_rows = [data_rows(os.path.join(out, f"shard-{i}-of-4.csv")) for i in range(4)]
    assert sum(shard_rows) == 301 and min(shard_rows) > 0, shard_rows
    assert 0 < rows_at_kill < shard_rows[0], f"task 0 had {rows_at_kill} of {shard_rows[0]} rows when killed"
    with open(single, "rb") as f1, open(os.path.join(out, "predictions.csv"), "rb") as f2:
        assert f1.read() == f2.read(), "merged predictions differ from the single-process run"
    # The requeued task resumed its file rather than starting over.
    victim_log = next(n for n in os.listdir(os.path.join(out, "logs")) if n.endswith("_0.log"))
    with open(os.path.join(out, "logs", victim_log)) as f:
        text = f.read()
    assert "attempt 1" in text and "attempt 2" in text, text
    # Skipped on the rerun: the other shards' inputs and the rows the killed attempt completed.
    assert f"{301 - shard_rows[0] + kept} skipped" in text, text
    print(f"task 0 killed after {rows_at_kill} of {shard_rows[0]} rows ({killed_state}), requeued, resumed; "
          f"shards {shard_rows}")

    # merge.sbatch refuses to merge while a shard is unfinished, naming it.
    os.remove(os.path.join(out, "shard-2-of-4.done"))
    r = subprocess.run(["bash", os.path.join(SCRIPTS, "merge.sbatch"), out, "4"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "shard(s) 2 of 4 did not finish" in r.stderr, r.stderr


if __name__ == "__main__":
    main()
