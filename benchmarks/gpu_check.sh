#!/usr/bin/env bash
# One script to run on a machine with an NVIDIA GPU (after `pip install -e ".[gpu,demo]"`):
#
#     bash benchmarks/gpu_check.sh [WORKDIR]          # the real check: 256x256 photos, code 128
#     bash benchmarks/gpu_check.sh --cpu-smoke        # the same steps, shrunk, on the CPU (no GPU needed)
#
# 1. makes 256x256 JPEG photo crops (the photographs bundled in scikit-image and scikit-learn) as Parquet;
# 2. trains the README's product example (conv, filters 32,64,128,256, code 128) with --mixed-precision;
# 3. checks that training ran on the GPU: the model metadata's training.device, and tf.config in the process;
# 4. encodes the same rows with the exported model twice: on the GPU, and on the CPU in a second process
#    (CUDA_VISIBLE_DEVICES=), and checks np.allclose(gpu, cpu, rtol=1e-3, atol=1e-3) on the embeddings
#    (float16 compute on the GPU, float32 on the CPU: equal to about three digits);
# 5. prints images/s for training (over the passes after the first) and for encode.
# Exits non-zero on any failed check. Environment: ROWS, SIZE, EPOCHS override the sizes.
set -euo pipefail

MODE=gpu
if [[ "${1:-}" == "--cpu-smoke" ]]; then MODE=cpu-smoke; shift; fi
WORKDIR=${1:-$(mktemp -d -t ae_tf_gpu_check_XXXX)}
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

if [[ $MODE == cpu-smoke ]]; then
  ROWS=${ROWS:-96} SIZE=${SIZE:-64} EPOCHS=${EPOCHS:-2} BATCH=16 FILTERS=8,16,32,64
  export CUDA_VISIBLE_DEVICES=
else
  ROWS=${ROWS:-4000} SIZE=${SIZE:-256} EPOCHS=${EPOCHS:-3} BATCH=64 FILTERS=32,64,128,256
fi
echo "gpu_check: mode $MODE, $ROWS rows of ${SIZE}x${SIZE}, $EPOCHS epochs, workdir $WORKDIR"
rm -rf "$WORKDIR/data" "$WORKDIR/model" "$WORKDIR/model.run"
mkdir -p "$WORKDIR"

"$PYTHON" - "$WORKDIR/data" "$ROWS" "$SIZE" <<'EOF'
import sys
from ae_tf.demo_images import write_photo_parquet
paths = write_photo_parquet(sys.argv[1], rows=int(sys.argv[2]), size=int(sys.argv[3]), files=4)
print(f"data: {len(paths)} Parquet files of {sys.argv[3]}x{sys.argv[3]} JPEG crops under {sys.argv[1]}")
EOF

# Train in-process so both the metadata and the process's own tf.config can be checked.
"$PYTHON" - "$WORKDIR" "$SIZE" "$EPOCHS" "$BATCH" "$FILTERS" "$MODE" <<'EOF'
import json, sys, time
import keras
import tensorflow as tf
from ae_tf.train import make_train_config, train

workdir, size, epochs, batch, filters, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]

class PassTimer(keras.callbacks.Callback):
    seconds = []
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)

config = make_train_config(f"{workdir}/data", "image", f"{workdir}/model", 128, family="conv", image_size=size,
                           channels=3, filters=filters, epochs=epochs, batch_size=batch, mixed_precision=True,
                           min_steps=0, patience=epochs)
result = train(config, callbacks=[PassTimer()])
training = result.metadata["training"]
later = PassTimer.seconds[1:] or PassTimer.seconds
rate = training["rows_train"] * len(later) / sum(later)
gpus = tf.config.list_logical_devices("GPU")
print(f"train: {rate:.1f} images/s (passes 2..{len(PassTimer.seconds)}), device: {training['device']}, "
      f"GPUs seen by TensorFlow: {len(gpus)}, cache: {training['cache']['enabled']}")
ok = bool(gpus) and "GPU" in training["device"]
if mode == "cpu-smoke":
    ok = not gpus and "CPU" in training["device"]
with open(f"{workdir}/train.json", "w") as f:
    json.dump({"images_per_s": rate, "device": training["device"], "gpus": len(gpus)}, f)
if not ok:
    sys.exit(f"FAILED: training did not run on the expected device ({mode}): {training['device']}")
print(f"check: training ran on the {'GPU' if mode == 'gpu' else 'CPU (smoke mode)'}: ok")
EOF

ENCODE='
import sys, time
import numpy as np, pyarrow.dataset as ds, tensorflow as tf
data, model_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
images = ds.dataset(data, format="parquet").to_table(columns=["image"]).column("image").to_numpy(zero_copy_only=False)
encode = tf.saved_model.load(model_dir).signatures["encode"]
batch = 64
encode(features=tf.constant(images[:batch]))  # warm up (tracing, kernels)
start, codes = time.perf_counter(), []
for lo in range(0, len(images), batch):
    codes.append(encode(features=tf.constant(images[lo:lo + batch]))["embedding"].numpy())
seconds = time.perf_counter() - start
np.save(out, np.concatenate(codes))
device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
print(f"encode on {device}: {len(images) / seconds:.1f} images/s ({len(images)} rows, batches of {batch})")
'
if [[ $MODE == gpu ]]; then
  "$PYTHON" -c "$ENCODE" "$WORKDIR/data" "$WORKDIR/model" "$WORKDIR/codes_gpu.npy"
else  # no GPU: the first encode is a CPU process too, the comparison still runs end to end
  CUDA_VISIBLE_DEVICES= "$PYTHON" -c "$ENCODE" "$WORKDIR/data" "$WORKDIR/model" "$WORKDIR/codes_gpu.npy"
fi
CUDA_VISIBLE_DEVICES= "$PYTHON" -c "$ENCODE" "$WORKDIR/data" "$WORKDIR/model" "$WORKDIR/codes_cpu.npy"

"$PYTHON" - "$WORKDIR" <<'EOF'
import sys
import numpy as np
a, b = np.load(f"{sys.argv[1]}/codes_gpu.npy"), np.load(f"{sys.argv[1]}/codes_cpu.npy")
diff = float(np.abs(a - b).max())
if a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=1e-3):
    sys.exit(f"FAILED: GPU and CPU embeddings differ (max abs difference {diff:.3g}, tolerance 1e-3)")
print(f"check: {len(a)} rows encode identically on GPU and CPU (max abs difference {diff:.3g} <= 1e-3): ok")
EOF
echo "gpu_check: all checks passed"
