#!/usr/bin/env python3
"""Makes the .npy files that tests/Core.Tests/ArrayFormatsTests.cs reads, with numpy itself.

Run from the repository root (Debian: `apt install python3-numpy`):
`python3 scripts/numpy/make_reference_arrays.py`. CI uses the checked-in files under
tests/Core.Tests/Data/numpy/ and needs no numpy.

* images_u8.npy: 5 images of 1x3x4 pixels as uint8 (N x C x H x W), values 0..255;
* labels_i64.npy: their 5 labels as int64;
* features_f32.npy, labels_u8.npy: a 4 x 3 float32 matrix and 4 uint8 labels;
* big_endian.npy (>f8) and fortran.npy (Fortran order): arrays the reader must refuse.
"""
import numpy as np

OUT = "tests/Core.Tests/Data/numpy/"
images = (np.arange(5 * 12).reshape(5, 1, 3, 4) * 4 % 256).astype(np.uint8)
np.save(OUT + "images_u8.npy", images)
np.save(OUT + "labels_i64.npy", np.array([0, 1, 2, 1, 0], dtype=np.int64))
np.save(OUT + "features_f32.npy", np.array([[0.5, -1.25, 3.0], [1.0, 2.0, 3.0], [-0.125, 0.0, 7.5], [4.0, 5.0, 6.0]], dtype=np.float32))
np.save(OUT + "labels_u8.npy", np.array([1, 0, 1, 0], dtype=np.uint8))
np.save(OUT + "big_endian.npy", np.arange(6, dtype=">f8").reshape(2, 3))
np.save(OUT + "fortran.npy", np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3)))
print("wrote", OUT)
