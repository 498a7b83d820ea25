//! A whole exec-like exchange over a real Unix socket, encrypted as on the host-facing channel:
//! a server thread that "runs" a command upper-casing its stdin, and a client with a
//! stdin-pumping thread and a reading thread, both honouring flow control. Sends 4 times the
//! initial window each way.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use enclave_proto::transport::{connect, listen, Addr, Connection};
use enclave_proto::wire::secure::{SecureReader, SecureWriter, Transport};
use enclave_proto::wire::{
    encode, read_frame, read_message, write_frame, write_message, Capability, Channel,
    ClientMessage, ClientSession, ExecRequest, ExitStatus, Request, ServerMessage, ServerSession,
    Verdict, INITIAL_WINDOW, MAX_DATA_CHUNK,
};

mod session_support;
use session_support::{client, key, server};

/// The server's set-up in clear; returns the keys of what follows.
fn server_setup(conn: &mut Connection, session: &mut ServerSession) -> Transport {
    loop {
        let frame = read_frame(conn).unwrap().unwrap();
        let (_, verdict) = session.on_recv_frame(frame.payload()).unwrap();
        if let Verdict::Respond(answer) = verdict {
            write_frame(conn, &encode(&answer).unwrap()).unwrap();
        }
        if let Some(t) = session.take_transport() {
            return t;
        }
    }
}

/// The client's set-up; returns the keys, the auth already sent through them.
fn client_setup(
    conn: &mut Connection,
    session: &mut ClientSession,
) -> (SecureReader<Connection>, SecureWriter<Connection>) {
    write_frame(conn, &encode(&session.hello().unwrap()).unwrap()).unwrap();
    loop {
        let frame = read_frame(conn).unwrap().unwrap();
        let (_, verdict) = session.on_recv_frame(frame.payload()).unwrap();
        if let Verdict::Respond(next) = verdict {
            write_frame(conn, &encode(&next).unwrap()).unwrap();
        }
        if let Some(t) = session.take_transport() {
            let mut reader = SecureReader::new(conn.try_clone().unwrap(), t.state());
            let mut writer = SecureWriter::new(conn.try_clone().unwrap(), t.state());
            write_message(&mut writer, &session.auth().unwrap().unwrap()).unwrap();
            writer.flush().unwrap();
            let ok = read_message::<ServerMessage>(&mut reader).unwrap().unwrap();
            session.on_recv(&ok).unwrap();
            assert!(session.is_ready());
            return (reader, writer);
        }
    }
}

const TOTAL: usize = 4 * INITIAL_WINDOW as usize + 12_345;

fn input() -> Vec<u8> {
    (0..TOTAL)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[i % 27])
        .collect()
}

/// The server: one thread, reads messages, queues output and sends it as credit allows.
fn serve(mut conn: Connection) {
    let mut session = server(&[Capability::Exec], &[key(1)]);
    let transport = server_setup(&mut conn, &mut session);
    let mut reader = SecureReader::new(conn.try_clone().unwrap(), transport.state());
    let mut writer = SecureWriter::new(conn, transport.state());
    type Writer = SecureWriter<Connection>;
    fn send(session: &mut ServerSession, writer: &mut Writer, msg: ServerMessage) {
        session.check_send(&msg).unwrap();
        write_message(writer, &msg).unwrap();
        writer.flush().unwrap();
    }
    let mut queue: VecDeque<u8> = VecDeque::new();
    let (mut exec_id, mut stdin_done, mut exited) = (None, false, false);
    while let Some(msg) = read_message::<ClientMessage>(&mut reader).unwrap() {
        match session.on_recv(&msg) {
            Ok(Verdict::Respond(answer)) => {
                write_message(&mut writer, &answer).unwrap();
                writer.flush().unwrap();
            }
            Ok(Verdict::Discard) => {}
            Ok(Verdict::Deliver) => match msg {
                ClientMessage::Request {
                    id,
                    request: Request::Exec(_),
                } => {
                    exec_id = Some(id);
                    send(
                        &mut session,
                        &mut writer,
                        ServerMessage::Started {
                            id,
                            pid: Some(4242),
                        },
                    );
                }
                ClientMessage::Data { id, data, .. } => {
                    queue.extend(data.iter().map(u8::to_ascii_uppercase));
                    // Consumed at once (handed to the process): grant it back.
                    let bytes = data.len() as u32;
                    send(
                        &mut session,
                        &mut writer,
                        ServerMessage::WindowUpdate { id, bytes },
                    );
                }
                ClientMessage::Eof { .. } => stdin_done = true,
                ClientMessage::WindowUpdate { .. } => {}
                other => panic!("unexpected {other:?}"),
            },
            Err(e) => panic!("{e}"),
        }
        // After the exit, read on: the client may still send window updates (discarded as
        // stale), and it is the client that closes the connection.
        let Some(id) = exec_id.filter(|_| !exited) else {
            continue;
        };
        // Send what the client's window allows; the rest waits for its WindowUpdate.
        loop {
            let credit = session.send_credit(id).unwrap_or(0) as usize;
            let n = queue.len().min(credit).min(MAX_DATA_CHUNK);
            if n == 0 {
                break;
            }
            let data: Vec<u8> = queue.drain(..n).collect();
            send(
                &mut session,
                &mut writer,
                ServerMessage::Data {
                    id,
                    channel: Channel::Stdout,
                    data: data.into(),
                },
            );
        }
        if stdin_done && queue.is_empty() {
            send(
                &mut session,
                &mut writer,
                ServerMessage::Eof {
                    id,
                    channel: Channel::Stdout,
                },
            );
            send(
                &mut session,
                &mut writer,
                ServerMessage::Exit {
                    id,
                    status: ExitStatus::Code(0),
                },
            );
            exited = true;
        }
    }
}

#[test]
fn exec_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Addr::Unix(dir.path().join("control.sock"));
    let listener = listen(&addr).unwrap();
    let server = thread::spawn(move || serve(listener.accept().unwrap()));

    let mut conn = connect(&addr).unwrap();
    let mut session = client(&[Capability::Exec], Some(key(1)));
    let (mut reader, writer) = client_setup(&mut conn, &mut session);
    let writer = Arc::new(Mutex::new(writer));
    assert_eq!(session.granted(), &[Capability::Exec]);
    let send = |writer: &Mutex<SecureWriter<Connection>>, msg: &ClientMessage| {
        let mut w = writer.lock().unwrap();
        write_message(&mut *w, msg).unwrap();
        w.flush().unwrap();
    };

    let exec = ExecRequest {
        argv: vec!["tr".into(), "a-z".into(), "A-Z".into()],
        env: vec![],
        cwd: None,
        tty: None,
        stdin: true,
        detach: false,
        user: None,
    };
    let (id, msg) = session.request(Request::Exec(exec)).unwrap();
    send(&writer, &msg);
    let started = read_message::<ServerMessage>(&mut reader).unwrap().unwrap();
    session.on_recv(&started).unwrap();
    assert_eq!(
        started,
        ServerMessage::Started {
            id,
            pid: Some(4242)
        }
    );

    // The session and a condition variable shared by the stdin pump and the reader.
    let shared = Arc::new((Mutex::new(session), Condvar::new()));
    let pump = {
        let (shared, writer) = (shared.clone(), writer.clone());
        thread::spawn(move || {
            let (lock, credit_changed) = &*shared;
            for chunk in input().chunks(MAX_DATA_CHUNK).chain([&[][..]]) {
                let msg = if chunk.is_empty() {
                    ClientMessage::Eof {
                        id,
                        channel: Channel::Stdin,
                    }
                } else {
                    ClientMessage::Data {
                        id,
                        channel: Channel::Stdin,
                        data: chunk.to_vec().into(),
                    }
                };
                let mut session = lock.lock().unwrap();
                while (session.send_credit(id).unwrap_or(0) as usize) < chunk.len() {
                    session = credit_changed.wait(session).unwrap();
                }
                session.check_send(&msg).unwrap();
                drop(session);
                send(&writer, &msg);
            }
        })
    };

    let (lock, credit_changed) = &*shared;
    let mut stdout = Vec::new();
    let status = loop {
        let msg = read_message::<ServerMessage>(&mut reader)
            .unwrap()
            .expect("exit before close");
        let mut session = lock.lock().unwrap();
        assert_eq!(session.on_recv(&msg).unwrap(), Verdict::Deliver);
        match msg {
            ServerMessage::Data { data, .. } => {
                stdout.extend_from_slice(&data);
                let update = ClientMessage::WindowUpdate {
                    id,
                    bytes: data.len() as u32,
                };
                session.check_send(&update).unwrap();
                drop(session);
                send(&writer, &update);
            }
            ServerMessage::WindowUpdate { .. } => credit_changed.notify_all(),
            ServerMessage::Eof { channel, .. } => assert_eq!(channel, Channel::Stdout),
            ServerMessage::Exit { status, .. } => break status,
            other => panic!("unexpected {other:?}"),
        }
    };
    pump.join().unwrap();
    // Closing is the client's move; the server's loop ends on end of stream.
    drop((reader, writer, conn));
    server.join().unwrap();
    assert_eq!(status, ExitStatus::Code(0));
    assert_eq!(stdout, input().to_ascii_uppercase());
}
