# The image for Kubernetes (kuberay_job.yaml): Ray's own 2.60 GPU image, as in
# ray_cluster.yaml, with this checkout installed.
#
#   docker build -t REGISTRY/vae-sweep:0.1.0 . && docker push REGISTRY/vae-sweep:0.1.0
FROM rayproject/ray:2.60.0-py311-gpu
COPY --chown=ray:users . /home/ray/vae-sweep
RUN pip install --no-cache-dir -e /home/ray/vae-sweep
WORKDIR /home/ray/vae-sweep
