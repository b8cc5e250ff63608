"""The lab nodes: Debian bookworm machines booted with systemd-nspawn on this host.

- commands: `python -m lab up|down|status|ssh|reboot|clean` and the inventory they write;
- topology: what a lab is (name, networks, nodes, where their state lives);
- image: a node's root filesystem (the cached base every node shares, each node's files);
- files/: the scripts and systemd units the base root gets, and the nodes' supervisor;
- nspawn: a node as a machine (boot under a supervisor, cgroups, poweroff, reboot);
- ssh: reaching a node (the lab key, known hosts, ssh's arguments);
- network: the bridge, the veths and the firewall that keeps the nodes inside;
- rootfs: debootstrap roots, cached (also the mirror's base images), and the
  Debian mirror they come from.

The bytes of files/ are part of the cached base root's key (image.prepare_base).
"""
