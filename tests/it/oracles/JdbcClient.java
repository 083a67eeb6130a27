// pgjdbc against `segflow serve`, the driver DBeaver, Metabase and Tableau use
// (tests/it/outputs/serve.rs): DatabaseMetaData listings, a prepared statement with typed
// parameters, and a fetch size with autocommit off, as those tools read large results.
//
//     java -cp /usr/share/java/postgresql.jar:. JdbcClient PORT USER PASSWORD SCHEMA
//
// Prints what it read, one fact per line, for the test to compare with the manifests.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class JdbcClient {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/segflow";
        Properties properties = new Properties();
        properties.setProperty("user", args[1]);
        properties.setProperty("password", args[2]);
        properties.setProperty("connectTimeout", "30");
        properties.setProperty("socketTimeout", "60");
        // Server-side prepared statements from the first execution, as pooled tools end up.
        properties.setProperty("prepareThreshold", "1");
        String schema = args[3];
        try (Connection connection = DriverManager.getConnection(url, properties)) {
            DatabaseMetaData meta = connection.getMetaData();
            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = meta.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
            }
            System.out.println("schemas " + String.join(",", schemas));
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, schema, "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            System.out.println("tables " + String.join(",", tables));
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, schema, "customer_profile", "%")) {
                while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
            }
            System.out.println("columns " + String.join(",", columns));

            try (PreparedStatement statement = connection.prepareStatement(
                    "SELECT customer_id, net_revenue, last_order_at FROM " + schema
                            + ".customer_profile WHERE net_revenue >= ? ORDER BY customer_id")) {
                statement.setBigDecimal(1, new BigDecimal("100.00"));
                int rows = 0;
                BigDecimal total = BigDecimal.ZERO;
                try (ResultSet rs = statement.executeQuery()) {
                    while (rs.next()) {
                        rows++;
                        total = total.add(rs.getBigDecimal("net_revenue"));
                    }
                }
                System.out.println("big_spenders " + rows + " " + total.toPlainString());
            }

            connection.setAutoCommit(false);
            try (PreparedStatement statement = connection.prepareStatement(
                    "SELECT segment, customer_id FROM " + schema + ".segment_membership")) {
                statement.setFetchSize(50);
                int rows = 0;
                try (ResultSet rs = statement.executeQuery()) {
                    while (rs.next()) rows++;
                }
                System.out.println("membership_rows " + rows);
            }
            connection.commit();
        }
    }
}
