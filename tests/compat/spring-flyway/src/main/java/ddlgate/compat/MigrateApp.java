package ddlgate.compat;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * Starts and stops: Spring Boot's Flyway auto-configuration migrates the database while the
 * context starts, the way an application deployed with spring-boot-starter-flyway does. A
 * failed migration fails the start, and the JVM exits with status 1.
 */
@SpringBootApplication
public class MigrateApp {
    public static void main(String[] args) {
        SpringApplication.run(MigrateApp.class, args).close();
    }
}
