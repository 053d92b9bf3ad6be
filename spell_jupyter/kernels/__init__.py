"""Remote kernels: Jupyter kernel specs ("Python 3 (Spell · CPU)", ...) whose kernels start as
Spell runs of kind kernel, through a jupyter_client kernel provisioner (`spell-provisioner`,
registered under the `jupyter_client.kernel_provisioners` entry point group)."""
