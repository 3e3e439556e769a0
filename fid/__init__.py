"""The FID engine: the StyleGAN2-ADA pipeline (TF1 bilinear resize, fp32 Inception,
float64 statistics, symmetric-eigenvalue Fréchet distance) with on-disk caches.

    python -m fid PATH1 PATH2            # folders, zips of folders, or .npz statistics
"""
