#!/usr/bin/env python3
"""Terrarium guest: accept vsock connections on PORT and splice each to the guest agent's unix socket.

Node has no AF_VSOCK and the image has no socat; Python's socket module has AF_VSOCK. The guest agent (main.ts)
starts this when the kernel command line carries terrarium.vsock_port=PORT (Firecracker), and serves the framed
protocol on the unix socket; this process only copies bytes. Usage: vsock-bridge.py PORT UNIX_SOCKET
"""
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(262144)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, target):
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        agent.connect(target)
    except OSError as err:
        print(f"vsock-bridge: cannot reach the agent at {target}: {err}", file=sys.stderr)
        conn.close()
        return
    threading.Thread(target=pump, args=(conn, agent), daemon=True).start()
    pump(agent, conn)
    conn.close()
    agent.close()


def main():
    port, target = int(sys.argv[1]), sys.argv[2]
    server = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    server.bind((socket.VMADDR_CID_ANY, port))
    server.listen(64)
    print(f"vsock-bridge: listening on vsock port {port}", file=sys.stderr, flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn, target), daemon=True).start()


if __name__ == "__main__":
    main()
