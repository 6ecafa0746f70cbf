"""Measuring restorations: per-image metrics (:mod:`.metrics`: PSNR, SSIM, measurement fit), paired statistics
(:mod:`.stats`), LPIPS (:mod:`.lpips`) and the small classifiers behind FD-cls and realism (:mod:`.classifier`)."""
