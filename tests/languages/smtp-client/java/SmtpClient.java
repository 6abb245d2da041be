// A correct smtp-client in Java (the contract of the exercise statement), for the grader's
// language matrix; build.sh compiles it and writes ./run.
// Exit status: 0 accepted for every recipient, 3 for some, 1 refused (or the server closed the
// connection / stopped answering for 10 s), 2 unreachable or greeting 4xx/5xx.
import java.io.*;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.*;

public class SmtpClient {
    static final int READ_TIMEOUT = 10_000;  // ms: the contract's read timeout
    static BufferedReader in;
    static Writer out;
    static String last = "";

    /** The server closed the connection or stopped answering. */
    static class ServerGone extends IOException {
        ServerGone(String why) { super(why); }
    }

    /** One whole reply: "250-" lines continue, "250 " ends it (RFC 5321 section 4.2.1). */
    static int reply() throws IOException {
        while (true) {
            String line;
            try { line = in.readLine(); }
            catch (SocketTimeoutException e) { throw new ServerGone("the server stopped answering (timed out after 10 s)"); }
            catch (IOException e) { throw new ServerGone("connection error: " + e.getMessage()); }
            if (line == null) throw new ServerGone("the server closed the connection");
            if (line.length() < 4 || line.charAt(3) != '-') {
                last = line;
                try { return Integer.parseInt(line.substring(0, 3)); } catch (RuntimeException e) { return 0; }
            }
        }
    }

    static void send(String s) throws IOException {
        try { out.write(s + "\r\n"); out.flush(); }
        catch (IOException e) { throw new ServerGone("the server closed the connection"); }
    }

    static int command(String s) throws IOException { send(s); return reply(); }

    /** A refusal: say why, QUIT while the connection is open (its reply does not matter), exit. */
    static void giveUp(int status, String what) {
        System.err.println("error: " + what + ": " + last);
        try { command("QUIT"); } catch (IOException e) { /* already closed */ }
        System.exit(status);
    }

    /** RFC 2047 "B" encoded-words of UTF-8, each of whole characters (section 5), at most 75
     *  characters, one per folded line of at most 76 (section 2). */
    static String encodeSubject(String s) {
        if (s.chars().allMatch(c -> c < 0x80)) return s;
        List<String> words = new ArrayList<>();
        ByteArrayOutputStream chunk = new ByteArrayOutputStream();
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            byte[] b = new String(Character.toChars(cp)).getBytes(StandardCharsets.UTF_8);
            if (chunk.size() + b.length > 39) { words.add(word(chunk.toByteArray())); chunk.reset(); }
            chunk.writeBytes(b);
            i += Character.charCount(cp);
        }
        if (chunk.size() > 0) words.add(word(chunk.toByteArray()));
        return String.join("\r\n ", words);
    }

    static String word(byte[] text) { return "=?utf-8?B?" + Base64.getEncoder().encodeToString(text) + "?="; }

    public static void main(String[] a) {
        Map<String, String> o = new HashMap<>();
        List<String> to = new ArrayList<>();
        for (int i = 0; i + 1 < a.length; i += 2) {
            if (a[i].equals("--to")) to.add(a[i + 1]); else o.put(a[i].substring(2), a[i + 1]);
        }
        List<String> text;
        try { text = Files.readAllLines(Path.of(o.get("body-file")), StandardCharsets.UTF_8); }
        catch (IOException | RuntimeException e) { System.err.println("error: cannot read the body file: " + e); System.exit(2); return; }
        Socket s;
        try {
            s = new Socket(o.get("server"), Integer.parseInt(o.get("port")));
            s.setSoTimeout(READ_TIMEOUT);
            in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.ISO_8859_1));
            out = new BufferedWriter(new OutputStreamWriter(s.getOutputStream(), StandardCharsets.US_ASCII));
        } catch (IOException | RuntimeException e) {
            System.err.println("error: cannot connect to " + o.get("server") + ":" + o.get("port") + ": " + e.getMessage());
            System.exit(2);
            return;
        }
        try {
            System.exit(session(o, to, text));
        } catch (IOException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(1);
        }
    }

    static int session(Map<String, String> o, List<String> to, List<String> text) throws IOException {
        if (reply() != 220) giveUp(2, "the server refused the session");
        int code = command("EHLO client.example");
        if (code == 500 || code == 502) code = command("HELO client.example");  // an old server
        if (code != 250) giveUp(1, "HELO/EHLO refused");
        if (command("MAIL FROM:<" + o.get("from") + ">") != 250) giveUp(1, "sender refused");
        int accepted = 0;
        for (String r : to) {
            code = command("RCPT TO:<" + r + ">");
            if (code == 250 || code == 251) accepted++;  // 251: will forward (RFC 5321 section 3.4)
            else System.err.println("error: recipient " + r + " refused: " + last);
        }
        if (accepted == 0) {
            System.err.println("error: no recipient accepted");
            try { command("QUIT"); } catch (IOException e) { /* already closed */ }
            return 1;
        }
        if (command("DATA") != 354) giveUp(1, "DATA refused");
        List<String> body = text;
        String joined = String.join("\r\n", text);
        boolean ascii = joined.chars().allMatch(c -> c < 0x80);
        StringBuilder m = new StringBuilder();
        m.append("From: <").append(o.get("from")).append(">\r\n");
        m.append("To: ").append(String.join(",\r\n ", to.stream().map(x -> "<" + x + ">").toList())).append("\r\n");
        m.append("Subject: ").append(encodeSubject(o.getOrDefault("subject", ""))).append("\r\n");
        m.append("Date: ").append(DateTimeFormatter.RFC_1123_DATE_TIME.format(ZonedDateTime.now())).append("\r\n");
        m.append("Message-ID: <").append(UUID.randomUUID()).append("@client.example>\r\n");
        if (!ascii) {  // the server is a 7-bit transport: base64 (RFC 2045 section 6.8), lines of 76
            m.append("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n");
            m.append("Content-Transfer-Encoding: base64\r\n");
            byte[] data = (joined + (text.isEmpty() ? "" : "\r\n")).getBytes(StandardCharsets.UTF_8);
            body = Arrays.asList(Base64.getMimeEncoder().encodeToString(data).split("\r\n"));
        }
        m.append("\r\n");
        for (String line : body) {
            m.append(line.startsWith(".") ? "." : "").append(line).append("\r\n");  // dot-stuffing
        }
        try { out.write(m.toString()); } catch (IOException e) { throw new ServerGone("the server closed the connection"); }
        send(".");
        if (reply() != 250) giveUp(1, "message refused");
        try { command("QUIT"); } catch (IOException e) { /* the message was accepted all the same */ }
        return accepted == to.size() ? 0 : 3;
    }
}
