// A correct smtp-client in Java (the happy path of the contract), for the grader's language
// matrix; build.sh compiles it and writes ./run.
import java.io.*;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.*;

public class SmtpClient {
    static BufferedReader in;
    static Writer out;
    static String last = "";

    static int reply() throws IOException {
        while (true) {
            String line = in.readLine();
            if (line == null) { System.err.println("the server closed the connection"); System.exit(1); }
            if (line.length() < 4 || line.charAt(3) != '-') { last = line; return Integer.parseInt(line.substring(0, 3)); }
        }
    }

    static void send(String s) throws IOException { out.write(s + "\r\n"); out.flush(); }

    static void giveUp(int status, String what) throws IOException {
        System.err.println(what + ": " + last);
        send("QUIT");
        reply();
        System.exit(status);
    }

    public static void main(String[] a) throws IOException {
        Map<String, String> o = new HashMap<>();
        List<String> to = new ArrayList<>();
        for (int i = 0; i + 1 < a.length; i += 2) {
            if (a[i].equals("--to")) to.add(a[i + 1]); else o.put(a[i].substring(2), a[i + 1]);
        }
        Socket s;
        try { s = new Socket(o.get("server"), Integer.parseInt(o.get("port"))); }
        catch (IOException e) { System.err.println("cannot connect: " + e.getMessage()); System.exit(2); return; }
        in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.ISO_8859_1));
        out = new BufferedWriter(new OutputStreamWriter(s.getOutputStream(), StandardCharsets.ISO_8859_1));
        if (reply() != 220) giveUp(2, "greeting");
        send("EHLO client.example");
        int code = reply();
        if (code == 500 || code == 502) { send("HELO client.example"); code = reply(); }
        if (code != 250) giveUp(1, "EHLO");
        send("MAIL FROM:<" + o.get("from") + ">");
        if (reply() != 250) giveUp(1, "MAIL");
        int accepted = 0;
        for (String r : to) {
            send("RCPT TO:<" + r + ">");
            code = reply();
            if (code == 250 || code == 251) accepted++; else System.err.println("recipient " + r + " refused: " + last);
        }
        if (accepted == 0) giveUp(1, "no recipient accepted");
        send("DATA");
        if (reply() != 354) giveUp(1, "DATA");
        StringBuilder m = new StringBuilder();
        m.append("From: <").append(o.get("from")).append(">\r\n");
        m.append("To: ").append(String.join(", ", to.stream().map(x -> "<" + x + ">").toList())).append("\r\n");
        m.append("Subject: ").append(o.getOrDefault("subject", "")).append("\r\n");
        m.append("Date: ").append(DateTimeFormatter.RFC_1123_DATE_TIME.format(ZonedDateTime.now())).append("\r\n");
        m.append("Message-ID: <").append(UUID.randomUUID()).append("@client.example>\r\n\r\n");
        for (String line : Files.readAllLines(Path.of(o.get("body-file")), StandardCharsets.UTF_8)) {
            m.append(line.startsWith(".") ? "." : "").append(line).append("\r\n");  // dot-stuffing
        }
        out.write(m.toString());
        send(".");
        if (reply() != 250) giveUp(1, "message refused");
        send("QUIT");
        reply();
        System.exit(accepted == to.size() ? 0 : 3);
    }
}
